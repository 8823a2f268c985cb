"""`collect`: the input joined with its outputs, one row per line, as a table."""
