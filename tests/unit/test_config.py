"""Settings: precedence, bounds, the key's format and hygiene, the http check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import SENTINEL_KEY, assert_no_key
from worker.api.network import check_base_url_security, is_loopback_host
from worker.cli import build_parser
from worker.config import load_api_key, load_settings
from worker.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("MIRA_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_match_the_contract() -> None:
    s = load_settings()
    assert s.base_url == "https://api.vmira.ai/v1"
    assert (s.model, s.concurrency, s.max_attempts) == ("mira", 16, 6)
    assert (s.request_timeout_s, s.max_retry_after_s, s.shutdown_grace_s) == (
        120,
        300,
        10,
    )
    assert (s.rpm, s.tpm, s.deadline_s, s.token_budget) == (None, None, None, None)
    assert s.max_consecutive_failures == 50
    assert (s.log_level, s.log_format, s.progress, s.progress_interval_s) == (
        "info",
        "text",
        "auto",
        10,
    )


def test_flag_beats_env_beats_dotenv_beats_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "MIRA_CONCURRENCY=5\nMIRA_MODEL=mira-pro\nMIRA_REQUEST_TIMEOUT=7\nOTHER=1\n"
    )
    assert load_settings().concurrency == 5
    assert load_settings().request_timeout_s == 7
    monkeypatch.setenv("MIRA_CONCURRENCY", "9")
    assert load_settings().concurrency == 9
    assert load_settings(concurrency=3).concurrency == 3
    assert load_settings(concurrency=None).concurrency == 9
    assert load_settings().model == "mira-pro"


def test_duration_env_names_carry_no_unit_suffix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIRA_MAX_RETRY_AFTER", "30")
    monkeypatch.setenv("MIRA_DEADLINE", "60")
    monkeypatch.setenv("MIRA_SHUTDOWN_GRACE", "2")
    monkeypatch.setenv("MIRA_LOG_FORMAT", "JSON")
    s = load_settings()
    assert (s.max_retry_after_s, s.deadline_s, s.shutdown_grace_s) == (30, 60, 2)
    assert s.log_format == "json"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("concurrency", 0),
        ("max_attempts", 0),
        ("request_timeout_s", 0),
        ("rpm", -1),
        ("base_url", "ftp://x"),
        ("base_url", "not a url"),
        ("log_format", "xml"),
    ],
)
def test_out_of_bounds_settings_are_config_errors(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match="invalid setting"):
        load_settings(**{name: value})


def test_key_from_env_is_stripped_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRA_API_KEY", f"  {SENTINEL_KEY}\n")
    assert load_api_key(load_settings()) == SENTINEL_KEY


def test_key_from_file_like_a_docker_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "key"
    secret.write_text(SENTINEL_KEY + "\n")
    monkeypatch.setenv("MIRA_API_KEY_FILE", str(secret))
    assert load_api_key(load_settings()) == SENTINEL_KEY


def test_unreadable_key_file_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRA_API_KEY_FILE", "/nonexistent/key")
    with pytest.raises(ConfigError, match="cannot read MIRA_API_KEY_FILE"):
        load_api_key(load_settings())


def test_missing_key_says_where_to_put_it() -> None:
    with pytest.raises(ConfigError, match="MIRA_API_KEY"):
        load_api_key(load_settings())


@pytest.mark.parametrize(
    "bad",
    [
        SENTINEL_KEY[:-1],
        SENTINEL_KEY + "0",
        SENTINEL_KEY.replace("sk-mira-", "sk-live-"),
        SENTINEL_KEY[:-1] + "g",
        "sk-mira-not-a-key",
    ],
)
def test_malformed_key_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("MIRA_API_KEY", bad)
    with pytest.raises(ConfigError) as info:
        load_api_key(load_settings())
    message = str(info.value)
    assert "sk-mira-' followed by 40 hexadecimal" in message
    assert bad not in message
    assert bad[8:] not in message


def test_settings_repr_hides_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIRA_API_KEY", SENTINEL_KEY)
    s = load_settings()
    assert_no_key(repr(s))
    assert_no_key(str(s))
    assert_no_key(str(s.model_dump()))


def test_validation_errors_never_echo_the_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MIRA_API_KEY", SENTINEL_KEY)
    with pytest.raises(ConfigError) as info:
        load_settings(concurrency=SENTINEL_KEY)
    assert_no_key(str(info.value))


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.vmira.ai/v1", True),
        ("http://127.0.0.1:8080/v1", True),
        ("http://localhost:8080/v1", True),
        ("http://[::1]:8080/v1", True),
        ("http://127.8.9.10/v1", True),
        ("http://api.vmira.ai/v1", False),
        ("http://10.0.0.5/v1", False),
    ],
)
def test_plain_http_only_to_loopback(url: str, allowed: bool) -> None:
    settings = load_settings(base_url=url)
    if allowed:
        check_base_url_security(settings)
    else:
        with pytest.raises(ConfigError, match="--allow-insecure-http"):
            check_base_url_security(settings)
        check_base_url_security(load_settings(base_url=url, allow_insecure_http=True))


def test_is_loopback_host() -> None:
    assert is_loopback_host("localhost")
    assert is_loopback_host("::1")
    assert not is_loopback_host("example.com")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "x.jsonl", "--timeout", "0"],
        ["run", "x.jsonl", "--timeout", "nan"],
        ["run", "x.jsonl", "--max-retry-after", "-1"],
        ["run", "x.jsonl", "--deadline", "soon"],
        ["run", "x.jsonl", "--shard", "2/2"],
        ["run", "x.jsonl", "--shard", "a/b"],
        ["run", "x.jsonl", "--fresh", "--retry-failed"],
    ],
)
def test_bad_flags_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2


def test_shutdown_grace_of_zero_is_allowed() -> None:
    args = build_parser().parse_args(["run", "x.jsonl", "--shutdown-grace", "0"])
    assert args.shutdown_grace_s == 0


@pytest.mark.parametrize(
    "name",
    [
        "DEADLINE_S",
        "REQUEST_TIMEOUT_S",
        "SHUTDOWN_GRACE_S",
        "MAX_RETRY_AFTER_S",
        "PROGRESS_INTERVAL_S",
        "CONCURRENCY",
        "deadline_s",
    ],
)
def test_only_mira_variables_configure_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    monkeypatch.setenv(name, "3")
    (tmp_path / ".env").write_text(f"{name}=4\n")
    s = load_settings()
    assert s.deadline_s is None
    assert (s.request_timeout_s, s.shutdown_grace_s, s.max_retry_after_s) == (
        120,
        10,
        300,
    )
    assert (s.progress_interval_s, s.concurrency) == (10, 16)


def test_a_dotenv_that_is_not_utf8_is_a_clear_config_error(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"MIRA_MODEL=caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings()
