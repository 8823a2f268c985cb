"""The API client: one attempt of one request, and what each answer means
(an answer, an error to retry, a job's failure, or a reason to stop)."""
