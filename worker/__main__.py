"""`python -m worker` does what the `mira-batch` command does."""

from worker.cli import main

raise SystemExit(main())
