"""Reporting: the run's counts and their one writer, the summary, the live
display, metrics for schedulers, and what the tokens cost."""
