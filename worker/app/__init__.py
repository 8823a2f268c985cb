"""The composition root: each command's wiring of the layers below it
(run, demo, validate, collect), with the files a run reads and writes."""
