"""Answers as data: what checking an answer against a JSON Schema costs.

    python bench/run.py schema [--jobs N] [--rounds R]

1. Validation cost per answer: a 1 KB JSON answer, read and validated as the
   run does (domain/schema.py: orjson, jsonschema-rs), against the interpreted
   `jsonschema` and fastjsonschema (draft-07, its newest) when installed.
2. Throughput against nginx answering that JSON: mira-batch with --json-schema
   and without, beside the lean aiohttp client, concurrency 64.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import orjson

from worker.domain.answer import Answer
from worker.domain.schema import make_schema
from worker.files.jobs import Rules, parse_job
from worker.report.tally import Tally
from worker.run.checks import AnswerCheck
from worker.run.hooks import Conversation

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["title", "sentiment", "score", "tags", "entities", "summary"],
    "properties": {
        "title": {"type": "string", "maxLength": 200},
        "sentiment": {"enum": ["positive", "negative", "neutral"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
        "entities": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "kind"],
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"type": "string"},
                    "start": {"type": "integer"},
                },
            },
        },
        "summary": {"type": "string"},
        "language": {"type": "string", "pattern": "^[a-z]{2}$"},
    },
    "additionalProperties": False,
}
VALUE: dict[str, Any] = {
    "title": "A title of some length for the document under study, in words",
    "sentiment": "neutral",
    "score": 0.42,
    "tags": ["alpha", "beta", "gamma", "delta"],
    "entities": [
        {"name": f"Entity number {i}", "kind": "organisation", "start": i * 10}
        for i in range(8)
    ],
    "summary": "word " * 60,
    "language": "en",
}
CONTENT = json.dumps(VALUE)


def reply_body() -> str:
    """nginx's answer: the 1 KB JSON as the content, for the schema runs."""
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "mira",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CONTENT},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 40,
                "completion_tokens": 80,
                "total_tokens": 120,
            },
        },
        separators=(",", ":"),
    )


def _per_call_us(step: Any, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        step()
    return round((time.perf_counter() - started) / n * 1e6, 2)


def validation_cost(n: int = 20_000) -> dict[str, Any]:
    """Microseconds per answer, for each validator."""
    schema = make_schema("bench", SCHEMA)
    job = parse_job(orjson.dumps({"prompt": "x"}), 1, Rules(schema=schema))
    check = AnswerCheck(max_reasks=2, on_truncated="retry", tally=Tally())
    answer = Answer(200, orjson.loads(reply_body()), "bench")
    talk = Conversation.of(job)
    results: dict[str, Any] = {"answer_bytes": len(CONTENT.encode())}
    results["mira-batch answer check (orjson + jsonschema-rs)"] = _per_call_us(
        lambda: check(talk, answer), n
    )
    value = orjson.loads(CONTENT)
    try:
        import jsonschema

        interpreted = jsonschema.Draft202012Validator(SCHEMA)
        results["jsonschema (pure Python), validate only"] = _per_call_us(
            lambda: interpreted.is_valid(value), max(1, n // 20)
        )
    except ImportError:
        results["jsonschema (pure Python), validate only"] = None
    try:
        import fastjsonschema

        compiled = fastjsonschema.compile(
            {**SCHEMA, "$schema": "http://json-schema.org/draft-07/schema#"}
        )
        results["fastjsonschema (draft-07), validate only"] = _per_call_us(
            lambda: compiled(value), n
        )
    except ImportError:
        results["fastjsonschema (draft-07), validate only"] = None
    for name, value_us in results.items():
        print(f"  {name}: {value_us}")
    return results


def write_schema(work: Path) -> Path:
    path = work / "bench.schema.json"
    path.write_text(json.dumps(SCHEMA))
    return path
