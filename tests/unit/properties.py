"""The properties tests/unit/test_properties.py checks, with their strategies.

Both run in-process and seeded by hypothesis's database of examples; the second
drives the real run loop with a scripted client, stopping it at random points
for random reasons, then resumes until the file is done.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import SessionlessClient
from tests.helpers import run_settings, simple_jobs, write_jobs
from worker.api.keys import KeyRing
from worker.app.run import execute_run
from worker.config import Settings
from worker.domain.answer import Answer
from worker.errors import (
    AuthError,
    PaymentRequiredError,
    RateLimitedError,
    RequestRejectedError,
    ServerError,
)
from worker.files.jobs import Rules
from worker.files.outputs import RunFiles
from worker.files.records import Recorder
from worker.files.resume import ResumeState
from worker.files.sources import JobLines
from worker.files.writer import ResultWriter, dumps_line
from worker.report.tally import Tally
from worker.run.reader import Intake

# -- every line becomes a request or one invalid record ----------------------


class CapturingWriter(ResultWriter):
    """Serialises each record as the real writer would, and keeps the lines."""

    def __init__(self) -> None:
        super().__init__(Path("r"), Path("e"))
        self.lines: list[bytes] = []

    def write_error(self, record: Mapping[str, object]) -> None:
        self.lines.append(dumps_line(record))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def nested(draw: st.DrawFn) -> Any:
    value: Any = draw(json_values)
    dicts_every = draw(st.integers(1, 3))  # objects, arrays or a mix
    for level in range(draw(st.integers(200, 1100))):
        value = {"n": value} if level % dicts_every == 0 else [value]
    return value


job_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=6) | st.integers() | json_values,
        "custom_id": st.text(max_size=6) | json_values,
        "prompt": st.text(max_size=10) | json_values,
        "system": st.text(max_size=5) | json_values,
        "messages": json_values
        | st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "system", "x"])},
                optional={"content": st.text(max_size=5) | json_values},
            ),
            max_size=3,
        ),
        "metadata": json_values | nested(),
        "temperature": json_values | nested(),
        "body": json_values,
        "method": st.sampled_from(["POST", "GET"]) | json_values,
    },
)


def as_line(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return b"{"  # too deep for orjson to write: a broken line then


lines = st.one_of(
    st.binary(min_size=1, max_size=120),
    job_like.map(as_line),
    nested().map(lambda v: json.dumps(v).encode()),
).filter(lambda line: b"\n" not in line and line.strip() != b"")


@settings(max_examples=75, deadline=None)
@given(st.lists(lines, min_size=1, max_size=12))
def every_line_becomes_a_request_or_one_invalid_record(raw: list[bytes]) -> None:
    writer = CapturingWriter()
    intake = Intake(
        source=JobLines(io.BytesIO(), Rules()),
        shard=None,
        resume=ResumeState(),
        tally=Tally(),
        recorder=Recorder(writer),
    )
    jobs = 0
    for line_no, line in enumerate(raw, start=1):
        before = len(writer.lines)
        job = intake.admit(line_no, line)
        if job is not None:
            jobs += 1
            body = orjson.loads(job.payload)
            assert isinstance(body, dict)
            assert body["messages"]
            assert len(writer.lines) == before
        else:
            assert len(writer.lines) == before + 1
            record = orjson.loads(writer.lines[-1])
            assert record["error"]["code"] == "invalid_input"
            assert record["line"] == line_no
    assert jobs + len(writer.lines) == len(raw)


# -- exactly once, whatever stops the run --------------------------------------

OK = {"choices": [{"message": {"content": "ok"}}], "usage": {"total_tokens": 2}}
ACTIONS = ["ok", "500", "400", "401", "402", "429-long", "sigterm"]


class ScriptedClient(SessionlessClient):
    """Answers request N as the plan says; everything unplanned succeeds."""

    def __init__(self, plan: dict[int, str]) -> None:
        self.plan = plan
        self.calls = 0

    async def complete(self, payload: bytes, *, stream: bool = False) -> Answer:
        self.calls += 1
        await asyncio.sleep(0)
        action = self.plan.get(self.calls, "ok")
        if action == "500":
            raise ServerError("flaky", status=500)
        if action == "400":
            raise RequestRejectedError("bad", status=400)
        if action == "401":
            raise AuthError("revoked", status=401)
        if action == "402":
            raise PaymentRequiredError("no money", status=402)
        if action == "429-long":
            raise RateLimitedError("daily cap", status=429, retry_after_s=3600)
        if action == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        return Answer(200, dict(OK), None)


def ids_in(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["custom_id"] for line in path.read_bytes().splitlines()]


async def run_until_done(directory: Path, plan: dict[int, str], jobs: int) -> None:
    files = RunFiles(
        input=str(directory / "jobs.jsonl"),
        results=directory / "r.jsonl",
        errors=directory / "e.jsonl",
        summary=directory / "s.json",
    )
    settings = run_settings(
        "http://127.0.0.1:9/v1", concurrency=4, max_attempts=3, shutdown_grace_s=5
    )

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    codes: list[int] = []
    held: list[str] = []
    for attempt in range(6):
        client = ScriptedClient(plan if attempt == 0 else {})

        def factory(s: Settings, key: KeyRing, c: ScriptedClient = client) -> Any:
            return c

        codes.append(
            await execute_run(
                settings,
                files,
                out=io.StringIO(),
                sleep=no_wait,
                client_factory=factory,
            )
        )
        held = ids_in(files.results) + ids_in(files.errors)
        assert max(Counter(held).values(), default=1) == 1  # at most once, always
        if codes[-1] in (0, 1):
            break
    assert codes[-1] in (0, 1), codes
    assert Counter(held) == Counter(f"job-{i}" for i in range(jobs))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.dictionaries(st.integers(1, 40), st.sampled_from(ACTIONS), max_size=4),
    st.integers(5, 30),
)
def exactly_once_over_random_stops_and_resumes(plan: dict[int, str], jobs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_jobs(directory / "jobs.jsonl", simple_jobs(jobs))
        asyncio.run(run_until_done(directory, plan, jobs))
