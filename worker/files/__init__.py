"""Files: the job format and its parser, output records, the single writer,
resume state, and the output paths with their lock."""
