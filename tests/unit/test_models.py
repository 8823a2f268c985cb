"""parse_job: both line shapes, ids, defaults, and every kind of invalid line."""

from __future__ import annotations

import json

import orjson
import pytest

from worker.domain.job import shard_of
from worker.errors import InvalidJobError
from worker.files.jobs import Rules, parse_job
from worker.files.shapes import MAX_MESSAGES


def parse(obj: object, line_no: int = 1) -> tuple[str, dict[str, object]]:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    job = parse_job(raw, line_no)
    return job.id, orjson.loads(job.payload)


def test_batch_shape_uses_custom_id_and_body() -> None:
    job_id, body = parse(
        {
            "custom_id": "a-1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "mira-pro",
                "messages": [{"role": "user", "content": "hi"}],
            },
        }
    )
    assert job_id == "a-1"
    assert body == {
        "model": "mira-pro",
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_simple_prompt_shape_builds_messages_and_keeps_chat_parameters() -> None:
    job_id, body = parse(
        {
            "id": "s",
            "prompt": "hello",
            "system": "be brief",
            "temperature": 0.2,
            "max_tokens": 9,
        }
    )
    assert job_id == "s"
    assert body == {
        "temperature": 0.2,
        "max_tokens": 9,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello"},
        ],
        "model": "mira",
    }


def test_simple_messages_shape_and_metadata_is_never_sent() -> None:
    raw = json.dumps(
        {
            "id": "m",
            "messages": [{"role": "user", "content": "x"}],
            "metadata": {"k": [1]},
        }
    ).encode()
    job = parse_job(raw, 3)
    assert job.metadata == {"k": [1]}
    assert b"metadata" not in job.payload


def test_missing_id_becomes_line_number_and_int_id_becomes_text() -> None:
    assert parse({"prompt": "x"}, line_no=17)[0] == "line-17"
    assert parse({"id": 42, "prompt": "x"})[0] == "42"


def test_stream_is_never_sent() -> None:
    _, body = parse({"prompt": "x", "stream": True})
    assert "stream" not in body


def test_token_estimate_counts_words_as_mira_and_max_tokens() -> None:
    job = parse_job(
        json.dumps(
            {
                "prompt": "a" * 400 + " two  three\nfour",
                "system": "s t",
                "max_tokens": 50,
            }
        ).encode(),
        1,
    )
    assert job.prompt_tokens_est == 4 + 2  # whitespace-separated words, all messages
    assert job.completion_tokens_est == 50
    assert job.tokens_est == 56
    assert job.system_messages == 1


def test_system_as_user_folds_system_messages_into_the_first_user_message() -> None:
    raw = json.dumps(
        {
            "messages": [
                {"role": "system", "content": "Answer in French."},
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": "Bonjour"},
                {"role": "user", "content": "More"},
            ]
        }
    ).encode()
    job = parse_job(raw, 1, Rules(system_as_user=True))
    messages = json.loads(job.payload)["messages"]
    assert messages[0] == {"role": "user", "content": "Answer in French.\n\nHello"}
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert job.system_messages == 0


@pytest.mark.parametrize(
    ("raw", "fragment", "has_id"),
    [
        (b"{not json", "not valid JSON", False),
        (b"\xff\xfe{}", "not valid UTF-8", False),
        (b"[1, 2]", "JSON object", False),
        (b'"text"', "JSON object", False),
        (b'{"id": "a"}', "no messages or prompt", True),
        (b'{"id": "a", "prompt": ""}', "prompt", True),
        (b'{"id": "a", "prompt": 5}', "prompt", True),
        (b'{"id": "a", "messages": []}', "non-empty list", True),
        (b'{"id": "a", "messages": "hi"}', "non-empty list", True),
        (b'{"id": "a", "messages": ["hi"]}', "messages[0] is not an object", True),
        (b'{"id": "a", "messages": [{"content": "hi"}]}', "role", True),
        (b'{"id": "a", "messages": [{"role": "user"}]}', "content", True),
        (b'{"id": "a", "messages": [{"role": "user", "content": 3}]}', "content", True),
        (b'{"id": "a", "prompt": "x", "system": 1}', "system", True),
        (b'{"id": "a", "prompt": "x", "metadata": [1]}', "metadata", True),
        (b'{"id": "a", "prompt": "x", "model": 7}', "model", True),
        (b'{"custom_id": "a", "body": "x"}', "body must be an object", True),
        (b'{"custom_id": "a", "method": "GET", "body": {}}', "POST", True),
        (
            b'{"custom_id": "a", "url": "/v1/embeddings", "body": {}}',
            "chat/completions",
            True,
        ),
        (b'{"id": ["x"], "prompt": "x"}', "id must be a string", False),
        (b'{"id": "  ", "prompt": "x"}', "id is empty", False),
        (b'{"id": true, "prompt": "x"}', "id must be a string", False),
    ],
)
def test_invalid_lines_raise_with_line_number_and_reason(
    raw: bytes, fragment: str, has_id: bool
) -> None:
    with pytest.raises(InvalidJobError) as info:
        parse_job(raw, 9)
    assert info.value.line_no == 9
    assert fragment in info.value.message
    assert (info.value.job_id == "a") is has_id


def test_too_many_messages_is_invalid() -> None:
    messages = [{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1)
    with pytest.raises(InvalidJobError, match="at most 200"):
        parse({"messages": messages})


def test_shard_of_is_stable_and_spreads_ids() -> None:
    assert shard_of("job-1", 4) == shard_of("job-1", 4)
    counts = [0, 0, 0, 0]
    for i in range(4000):
        counts[shard_of(f"job-{i}", 4)] += 1
    assert min(counts) > 850


def test_the_fingerprint_is_the_request_as_sent_whatever_the_lines_spelling() -> None:
    simple = parse_job(b'{"id": "a", "prompt": "hi", "temperature": 0.5}', 1)
    batch = parse_job(
        json.dumps(
            {
                "custom_id": "b",
                "body": {
                    "temperature": 0.5,
                    "messages": [{"content": "hi", "role": "user"}],
                    "model": "mira",
                },
            }
        ).encode(),
        2,
    )
    other = parse_job(b'{"prompt": "hi", "temperature": 0.7}', 3)
    defaulted = parse_job(b'{"prompt": "hi", "temperature": 0.5}', 4, Rules(model="x"))
    assert simple.fingerprint == batch.fingerprint  # ids and key order do not count
    assert len(simple.fingerprint) == 64
    assert other.fingerprint != simple.fingerprint
    assert defaulted.fingerprint != simple.fingerprint  # the model after defaults
