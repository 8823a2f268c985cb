"""mira-batch: a dependable batch worker for the Mira chat-completions API."""

__version__ = "0.1.0"
