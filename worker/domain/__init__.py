"""The domain's bottom floor: the values every layer shares and none owns: the
job, what an answer is, reported usage, prices, and what Mira's refusals mean.
It imports nothing of the package but its errors and stop reasons."""
