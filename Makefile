# Developer shortcuts; CI runs .ci/run, which does the same from a fresh venv.
.PHONY: lint typecheck test all lock

lint:
	ruff format --check worker tests bench
	ruff check worker tests bench
	hadolint Dockerfile
	kubernetes-validate deploy/*.yaml

typecheck:
	mypy

test:
	python -m pytest

all: lint typecheck test

# Hashed pins of the runtime dependencies, for the container image. Existing pins
# are kept; to move to newer releases, delete requirements.lock first.
lock:
	.venv/bin/uv pip compile pyproject.toml --python-version 3.11 --generate-hashes \
		--custom-compile-command "make lock" --quiet -o requirements.lock
