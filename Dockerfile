# mira-batch as a container job: job files and outputs live in /data, the key comes
# from MIRA_API_KEY or a mounted secret file named by MIRA_API_KEY_FILE.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY jobs ./jobs
# The same install as the README's: a venv, then pip install of this project.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
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
