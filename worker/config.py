"""Run settings: command-line flag, then MIRA_* environment, `.env`, then default."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError

KEY_PATTERN = re.compile(r"sk-mira-[0-9a-fA-F]{40}")
KEY_FORMAT = "'sk-mira-' followed by 40 hexadecimal characters (48 characters in all)"
DEFAULT_BASE_URL = "https://api.vmira.ai/v1"

LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["text", "json"]
ProgressMode = Literal["auto", "bar", "log", "off"]
StreamMode = Literal["auto", "always", "never"]
# The same choices for argparse, so the flags and the settings cannot drift apart.
LOG_LEVELS: tuple[str, ...] = get_args(LogLevel)
LOG_FORMATS: tuple[str, ...] = get_args(LogFormat)


def _env(name: str) -> str:
    # Durations carry `_s` in the code but not in the documented MIRA_* names.
    # Only the MIRA_ name: a bare DEADLINE_S in the environment is not ours.
    return f"mira_{name.removesuffix('_s')}"


class Settings(BaseSettings):
    """Everything a run can be configured with; see CONTRACT section 3."""

    model_config = SettingsConfigDict(
        env_prefix="MIRA_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    base_url: str = Field(DEFAULT_BASE_URL, description="API base URL")
    model: str = Field(
        "mira", min_length=1, description="model for jobs that name none"
    )
    max_response_bytes: int = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="largest answer read, in bytes, decompressed; a larger one "
        "fails its job (response_too_large)",
    )
    allow_insecure_http: bool = Field(
        False,
        description="allow an http:// base URL to a non-loopback host "
        "(refused without it)",
    )
    concurrency: int = Field(
        16,
        ge=1,
        le=4096,
        description="most requests in flight; the run adapts below it on 429",
    )
    max_attempts: int = Field(6, ge=1, le=100, description="attempts per job")
    request_timeout_s: float = Field(
        120.0,
        gt=0,
        validation_alias=_env("request_timeout_s"),
        description="per-attempt timeout, seconds",
    )
    rpm: float | None = Field(
        None, gt=0, description="requests per minute, evenly spaced (none: unlimited)"
    )
    tpm: float | None = Field(
        None,
        gt=0,
        description="tokens per minute, estimated, corrected by usage "
        "(none: unlimited)",
    )
    slot_expiry_s: float = Field(
        300.0,
        gt=0,
        validation_alias="mira_slot_expiry_s",
        description="seconds after the account's last request Mira frees an "
        "in-flight slot a cut request left held (300 in its source); the run plans "
        "around its own for so long, and never pauses longer for held slots",
    )
    max_retry_after_s: float = Field(
        300.0,
        ge=0,
        validation_alias=_env("max_retry_after_s"),
        description="longest Retry-After to wait, seconds; longer stops the run, "
        "exit 5",
    )
    deadline_s: float | None = Field(
        None,
        gt=0,
        validation_alias=_env("deadline_s"),
        description="wall-clock budget in seconds; stops resumably, exit 5",
    )
    max_cost_rub: float | None = Field(
        None, gt=0, validation_alias="mira_max_cost", description="cost cap in RUB"
    )
    token_budget: int | None = Field(
        None, gt=0, description="stop resumably once this many tokens were used, exit 5"
    )
    until_done: bool = Field(
        False,
        description="at Mira's daily message cap (or the --daily-reserve), wait for "
        "the reset at 00:00 UTC and go on, in the same process, until every job "
        "has an outcome; the monthly budget and --deadline still stop the run",
    )
    daily_reserve: int | None = Field(
        None,
        ge=0,
        description="leave this many of the day's messages to the people on the "
        "account: read from the usage route, counted per request (refusals too); "
        "reached, the run stops (exit 5, daily_reserve) or, with --until-done, "
        "waits for the reset",
    )
    max_consecutive_failures: int = Field(
        50,
        ge=0,
        description="API refusals in a row that stop the run, exit 6; 0 = never",
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        validation_alias=_env("shutdown_grace_s"),
        description="seconds in-flight requests get after SIGTERM/SIGINT",
    )
    stream: StreamMode = Field(
        "auto",
        description="streamed answers: auto asks for one after a 408 (Mira cuts a "
        "plain call at 30 s; a long answer only comes as a stream), always, never",
    )
    cache: Path | None = Field(None, description="an answer cache shared by runs")
    ca_bundle: Path | None = Field(
        None,
        description="a PEM file of CA certificates to trust as well (a private CA "
        "or a TLS-inspecting proxy's); SSL_CERT_FILE replaces the system's",
    )
    redo_changed: bool = Field(
        False, description="send again done jobs whose request changed since then"
    )
    dedupe: bool = Field(
        False, description="send each distinct request once; the others share it"
    )
    system_as_user: bool = Field(
        False, description="system messages into the first user one (Mira drops them)"
    )
    template: Path | None = Field(
        None,
        description="a Jinja2 template (sandboxed) each table row renders into "
        "its user message; the input is then a table: CSV, TSV, Parquet or JSONL "
        "records",
    )
    input_format: Literal["jsonl", "csv", "tsv", "parquet"] | None = Field(
        None,
        description="the input's format (default: from its extension; jsonl for "
        "standard input)",
    )
    id_column: str | None = Field(
        None,
        min_length=1,
        description="the table column that holds each job's id (default: the row "
        "number, stable only while rows are only appended)",
    )
    max_tokens: int | None = Field(
        None,
        ge=1,
        le=16_384,
        description="max_tokens of every request that sets none (Mira: 4,096 when "
        "unset, 16,384 at most)",
    )
    temperature: float | None = Field(
        None,
        ge=0,
        le=2,
        description="temperature of every request that sets none (0 to 2)",
    )
    json_schema: Path | None = Field(
        None,
        description="a JSON Schema (Draft 2020-12) every answer must meet; a "
        "line's own response_format wins for that line",
    )
    max_reasks: int = Field(
        2,
        ge=0,
        le=20,
        description="times an answer that is not JSON, or not valid under its "
        "schema, is asked for again (each a paid request); then invalid_output",
    )
    on_truncated: Literal["retry", "keep", "fail"] = Field(
        "retry",
        description="an answer cut at max_tokens: retry once with max_tokens "
        "doubled (up to 16,384), then truncated; keep it (marked truncated); "
        "or fail it (truncated)",
    )
    log_level: LogLevel = Field("info", description="how much to log")
    log_format: LogFormat = Field(
        "text", description="text for people, json for log collectors"
    )
    progress: ProgressMode = Field(
        "auto", description="auto: a live bar on a terminal, else status lines"
    )
    progress_interval_s: float = Field(
        10.0,
        gt=0,
        validation_alias=_env("progress_interval_s"),
        description="seconds between status lines",
    )
    metrics_file: Path | None = Field(
        None,
        description="write Prometheus metrics here (textfile collector format), "
        "every --progress-interval and at the end",
    )
    metrics_push: str | None = Field(
        None,
        description="push the final metrics to this Prometheus Pushgateway URL",
    )
    shard_count: int | None = Field(None, ge=1)

    @field_validator("log_level", "log_format", "progress", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value.rstrip("/")


def load_settings(**flags: object) -> Settings:
    """Settings from flags given (None = not given), environment and `.env`.

    Raises:
        ConfigError: a value is missing its format or out of its bounds.
    """
    given = {name: value for name, value in flags.items() if value is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except UnicodeDecodeError:
        raise ConfigError(
            "cannot read .env in the working directory: it is not UTF-8 text"
        ) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad setting, never echoing a secret value."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in err["loc"]) or "settings"
        lines.append(f"invalid setting {where}: {err['msg']}")
    return "; ".join(lines)


def load_api_key(settings: Settings) -> str:
    """The API key from MIRA_API_KEY or MIRA_API_KEY_FILE, checked for format.

    Raises:
        ConfigError: no key, an unreadable file, or a key of the wrong shape.
    """
    if settings.api_key is not None:
        raw, source = settings.api_key.get_secret_value(), "MIRA_API_KEY"
    elif settings.api_key_file is not None:
        source = f"MIRA_API_KEY_FILE ({settings.api_key_file})"
        try:
            raw = settings.api_key_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"cannot read {source}: {reason}") from None
    else:
        raise ConfigError(
            "no API key: set MIRA_API_KEY, or MIRA_API_KEY_FILE to a file holding it "
            "(the key is never taken from the command line)"
        )
    key = raw.strip()
    if not KEY_PATTERN.fullmatch(key):
        raise ConfigError(
            f"the API key from {source} is not a Mira key: expected {KEY_FORMAT}, "
            f"got {len(key)} characters"
        )
    return key
