"""Answers as data, piece by piece: schemas, the JSON an answer holds, what is
wrong with it, and how the model is asked again."""

from __future__ import annotations

import orjson
import pytest

from worker.domain.schema import (
    JSON_OBJECT,
    SchemaError,
    extract,
    from_response_format,
    make_schema,
    reask_message,
)
from worker.files.jobs import Rules, parse_job
from worker.sim.forms import instance_of

PERSON = make_schema(
    "person",
    {
        "type": "object",
        "required": ["name", "age"],
        "properties": {
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 0},
            "pets": {"type": "array", "items": {"$ref": "#/$defs/pet"}},
        },
        "$defs": {"pet": {"type": "object", "required": ["kind"]}},
    },
)


@pytest.mark.parametrize(
    ("content", "value", "form"),
    [
        ('{"a": 1}', {"a": 1}, "json"),
        ("  [1, 2]\n", [1, 2], "json"),
        ('Here:\n```json\n{"a": 1}\n```\nDone.', {"a": 1}, "fenced"),
        ('```\n{"a": 1}\n```', {"a": 1}, "fenced"),
        ('The result is {"a": {"b": [1]}} as asked.', {"a": {"b": [1]}}, "prose"),
    ],
)
def test_the_json_an_answer_holds_and_its_form(
    content: str, value: object, form: str
) -> None:
    assert extract(content) == (value, form)


@pytest.mark.parametrize(
    "content",
    ["no JSON here at all", 'two values {"a": 1} and {"b": 2}', ""],
)
def test_prose_with_no_single_value_holds_none(content: str) -> None:
    assert extract(content) is None


def test_broken_json_is_said_not_read_piecemeal() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        extract('{"title": "x", "tags": ["a"],')
    with pytest.raises(ValueError, match="fenced block"):
        extract("```json\n{broken\n```")


def test_problems_name_their_path_and_a_reask_names_at_most_five() -> None:
    problems = PERSON.problems({"name": 3, "age": -1, "pets": [{}, {"kind": "cat"}]})
    assert ("$.name", '3 is not of type "string"') in problems
    assert any(path == "$.pets[0]" for path, _ in problems)
    assert PERSON.problems({"name": "Ann", "age": 3}) == []
    many = [(f"$.f{i}", "wrong") for i in range(8)]
    message = reask_message(many)
    assert message.count("- at $.f") == 5
    assert "(and 3 more)" in message
    assert "JSON Schema" in reask_message("it holds no JSON value")


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ({"type": "objekt"}, "Draft 2020-12"),
        ([1, 2], "JSON object"),
        ({"$ref": "https://example.invalid/schema.json"}, "not fetched"),
    ],
)
def test_a_schema_that_is_no_draft_2020_12_schema_is_refused(
    document: object, why: str
) -> None:
    with pytest.raises(SchemaError, match=why):
        make_schema("x", document)


def test_response_formats_in_the_openai_shapes() -> None:
    assert from_response_format({"type": "json_object"}) is JSON_OBJECT
    spec = {"type": "json_schema", "json_schema": {"name": "p", "schema": {}}}
    assert from_response_format(spec).name == "p"
    for bad in ({"type": "text"}, "json", {"type": "json_schema"}):
        with pytest.raises(SchemaError):
            from_response_format(bad)


def test_the_instruction_ends_the_last_user_message_and_changes_the_request() -> None:
    line = orjson.dumps(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "who?"},
                {"role": "assistant", "content": "whom?"},
                {"role": "user", "content": "you"},
            ]
        }
    )
    plain = parse_job(line, 1)
    typed = parse_job(line, 1, Rules(schema=PERSON))
    body = orjson.loads(typed.payload)
    assert body["messages"][1]["content"] == "who?"
    assert body["messages"][3]["content"].startswith("you\n\nReply with one JSON")
    assert body["response_format"]["json_schema"]["name"] == "person"
    assert typed.fingerprint != plain.fingerprint
    assert typed.schema is PERSON


def test_the_simulator_answers_with_a_valid_instance() -> None:
    assert PERSON.problems(instance_of(PERSON.document, PERSON.document)) == []
