# Developer shortcuts; CI runs .ci/run, which does the same from a fresh venv.
.PHONY: lint typecheck test all

lint:
	ruff format --check worker tests bench
	ruff check worker tests bench
	hadolint Dockerfile

typecheck:
	mypy

test:
	python -m pytest

all: lint typecheck test
