# mira-batch as a container job: job files and outputs live in /data, the key comes
# from MIRA_API_KEY or a mounted secret file named by MIRA_API_KEY_FILE.

FROM python:3.11-slim AS build
WORKDIR /src
# The runtime dependencies, pinned and checked against their hashes (make lock);
# then the project itself, which brings no dependency of its own.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY jobs ./jobs
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="mira-batch" \
      org.opencontainers.image.description="Dependable batch worker for the Mira chat-completions API" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.source="https://git.mira-batch.invalid/mira-batch" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN useradd --create-home --uid 10001 --user-group mira \
    && mkdir /data \
    && chown mira:mira /data
USER 10001:10001
WORKDIR /data
# Exec form: mira-batch is PID 1 and receives SIGTERM itself, so `docker stop`
# drains in-flight requests (give it a --time longer than --shutdown-grace).
ENTRYPOINT ["mira-batch"]
CMD ["--help"]
