"""The run report: one self-contained HTML page (`<stem>.report.html`) drawn from
a run's summary, its timeline and its outcome files; it works offline."""
