"""Answers as data: a JSON Schema a job's answer must meet, the instruction that
asks for it where Mira listens, the JSON found in an answer, and what is wrong
with it, said so that the model can be asked again.

Mira ignores `response_format` and drops system messages, so the schema travels
as an instruction at the end of the last user message (the request keeps its
`response_format` too, for servers that honour it). An answer is read as JSON
whole, or from one fenced block, or as the one JSON value inside prose; which
form it took is recorded. Schemas are Draft 2020-12, checked and compiled once
by jsonschema-rs (a validator in Rust: 2.5 us for a 1 KB answer where the
pure-Python `jsonschema` takes 495 us, measured with bench/run.py schema).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Literal, TypedDict

import jsonschema_rs
import orjson

MAX_ERRORS_SAID = 5  # validation errors named in a re-ask, as instructor does
Form = Literal["json", "fenced", "prose"]
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n(.*?)\r?\n?```", re.DOTALL)
_DECODER = json.JSONDecoder()
_VALIDATORS: dict[str, jsonschema_rs.Validator] = {}  # digest -> compiled


class JsonSchemaSpec(TypedDict):
    """`response_format.json_schema`: the schema and its name."""

    name: str
    schema: dict[str, object]


class ResponseFormat(TypedDict):
    """OpenAI's `response_format` asking for a JSON Schema."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


class SchemaError(ValueError):
    """Not a usable JSON Schema (Draft 2020-12), or not a response_format."""


@dataclass(frozen=True, slots=True)
class Schema:
    """A JSON Schema an answer must meet, by name (for `response_format`)."""

    name: str
    document: dict[str, object]
    digest: str  # of its canonical JSON: one compiled validator per schema

    @property
    def properties(self) -> list[str]:
        """The top-level properties, in order, when the schema is of an object."""
        props = self.document.get("properties")
        if self.document.get("type") != "object" or not isinstance(props, dict):
            return []
        return [str(name) for name in props]

    def response_format(self) -> ResponseFormat:
        """The schema as OpenAI's `response_format`, for servers that honour it."""
        return {
            "type": "json_schema",
            "json_schema": {"name": self.name, "schema": self.document},
        }

    def instruction(self) -> str:
        """What the last user message says, so that Mira's model sees it."""
        return (
            "\n\nReply with one JSON value and nothing else: no prose, no code "
            "fence. It must conform to this JSON Schema:\n"
            + orjson.dumps(self.document).decode()
        )

    def problems(self, value: object) -> list[tuple[str, str]]:
        """What is wrong with `value` under this schema: (path, message) pairs,
        in the validator's order; none when it conforms."""
        return [
            (_path(error.instance_path), error.message)
            for error in _validator(self).iter_errors(value)
        ]


def _refuse_remote(uri: str, /) -> jsonschema_rs.JSONType:
    raise SchemaError(f"a $ref to {uri} is not fetched: put it in the schema")


def _validator(schema: Schema) -> jsonschema_rs.Validator:
    validator = _VALIDATORS.get(schema.digest)  # compiled once per schema
    if validator is None:
        validator = _VALIDATORS[schema.digest] = jsonschema_rs.Draft202012Validator(
            schema.document, retriever=_refuse_remote
        )
    return validator


def make_schema(name: str, document: object) -> Schema:
    """A schema from its JSON document, checked against Draft 2020-12 and
    compiled once.

    Raises:
        SchemaError: not an object, or not a valid JSON Schema.
    """
    if not isinstance(document, dict):
        raise SchemaError("a JSON Schema must be a JSON object")
    digest = hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS))
    schema = Schema(name, document, digest.hexdigest())
    try:
        _validator(schema)
    except (jsonschema_rs.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise SchemaError(f"not a valid JSON Schema (Draft 2020-12): {first}") from None
    return schema


JSON_OBJECT = make_schema("json_object", {"type": "object"})


def from_response_format(value: object) -> Schema:
    """The schema an OpenAI `response_format` asks for: `{"type":
    "json_schema", "json_schema": {"name", "schema"}}` or `{"type":
    "json_object"}`.

    Raises:
        SchemaError: neither shape, or an invalid schema.
    """
    if not isinstance(value, dict):
        raise SchemaError("response_format must be an object")
    kind = value.get("type")
    if kind == "json_object":
        return JSON_OBJECT
    if kind != "json_schema":
        raise SchemaError(
            f"response_format.type must be json_schema or json_object (got {kind!r})"
        )
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or "schema" not in spec:
        raise SchemaError("response_format.json_schema must hold a schema")
    name = spec.get("name")
    return make_schema(
        name if isinstance(name, str) and name else "schema", spec["schema"]
    )


def extract(content: str) -> tuple[object, Form] | None:
    """The JSON value an answer holds and the form it took: the whole answer,
    one fenced block, or the one object or array inside prose; None when it
    holds none (or more than one, which is no answer either).

    Raises:
        ValueError: the answer looks like JSON but does not parse (said in the
            re-ask); its message names the error.
    """
    text = content.strip()
    try:
        return orjson.loads(text), "json"
    except orjson.JSONDecodeError as exc:
        # Meant as JSON, and broken: not to be read piece by piece as prose.
        if text.startswith(("{", "[")):
            raise ValueError(f"it is not valid JSON: {exc}") from None
    fenced = _FENCE.findall(text)
    if len(fenced) == 1:
        try:
            return orjson.loads(fenced[0]), "fenced"
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the fenced block is not valid JSON: {exc}") from None
    found = _values_in_prose(text)
    return (found[0], "prose") if len(found) == 1 else None


def _values_in_prose(text: str) -> list[object]:
    """The objects and arrays that stand whole in `text`, outermost only."""
    found: list[object] = []
    index = 0
    while True:
        starts = [i for i in (text.find("{", index), text.find("[", index)) if i >= 0]
        if not starts:
            return found
        start = min(starts)
        try:
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            index = start + 1
            continue
        found.append(value)
        index = end


def _path(parts: object) -> str:
    """`$.entities[2].name` for the path ['entities', 2, 'name']."""
    path = "$"
    for part in parts if isinstance(parts, list | tuple) else ():
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def reask_message(problems: list[tuple[str, str]] | str) -> str:
    """The user message that asks again: what was wrong, at most
    MAX_ERRORS_SAID validation errors by path."""
    if isinstance(problems, str):
        said = problems
    else:
        lines = [f"- at {path}: {message}" for path, message in problems]
        more = len(lines) - MAX_ERRORS_SAID
        said = "it does not conform to the JSON Schema:\n" + "\n".join(
            lines[:MAX_ERRORS_SAID]
        )
        if more > 0:
            said += f"\n(and {more} more)"
    return (
        f"Your answer is not usable: {said}\n"
        "Reply again with one JSON value that conforms to the JSON Schema, and "
        "nothing else."
    )
