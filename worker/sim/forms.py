"""Answers in kind: given a JSON Schema in the request (its `response_format`),
the simulator answers with a valid instance of it, or with one of the faults a
model makes, drawn from the seed: prose, a fenced block, broken JSON, a missing
required field. Any answer may also come cut at max_tokens (`finish_reason:
"length"`), and a job may script its answers (`x_sim_forms`), tool calls too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from worker.sim.faults import Faults, unit

FORMS = ("valid", "prose", "fenced", "broken", "missing", "length", "tool_calls")
_DEPTH = 8


def requested_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The schema a request asks for in its `response_format`, if any."""
    spec = body.get("response_format")
    if not isinstance(spec, dict):
        return None
    if spec.get("type") == "json_object":
        return {"type": "object"}
    inner = spec.get("json_schema")
    schema = inner.get("schema") if isinstance(inner, dict) else None
    return schema if isinstance(schema, dict) else None


def conversation_key(body: Mapping[str, Any]) -> bytes:
    """What stays the same while a job is asked again: its first user message."""
    messages = body.get("messages") or []
    first = next(
        (
            m.get("content")
            for m in messages
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    return hashlib.blake2b(orjson.dumps(first), digest_size=16).digest()


def pick_form(
    faults: Faults, draw: tuple[object, ...], *, schema: bool, scripted: str | None
) -> str:
    """The form of this answer: scripted, else drawn from the seed."""
    if scripted in FORMS:
        return scripted
    roll = unit(*draw, "form")
    chances = [(faults.p_length, "length")]
    if schema:
        chances = [
            (faults.p_prose, "prose"),
            (faults.p_fenced, "fenced"),
            (faults.p_broken_json, "broken"),
            (faults.p_missing_field, "missing"),
            *chances,
        ]
    for chance, form in chances:
        if roll < chance:
            return form
        roll -= chance
    return "valid"


def shaped(
    schema: dict[str, Any] | None, form: str, echo: str
) -> tuple[str | None, str, list[dict[str, Any]] | None]:
    """The message content, finish reason and tool calls of an answer in this
    form: a valid instance of `schema` (else the echo) made into the fault."""
    if form == "tool_calls":
        call = {
            "id": "call_sim_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"query": "sim"}'},
        }
        return None, "tool_calls", [call]
    if schema is None:
        text = echo
    else:
        value = instance_of(schema, schema)
        if form == "missing":
            value = _without_a_required_field(value, schema)
        text = orjson.dumps(value).decode()
        if form == "prose":
            text = "Here is what I found, in plain words: " + " ".join(
                str(v) for v in (value.values() if isinstance(value, dict) else [value])
            )
        elif form == "fenced":
            text = f"Sure, here it is:\n```json\n{text}\n```\nAnything else?"
        elif form == "broken":
            text = text[: max(1, len(text) - 1)] + ","
    if form == "length":
        return text[: max(1, len(text) // 2)], "length", None
    return text, "stop", None


def _without_a_required_field(value: object, schema: dict[str, Any]) -> object:
    required = schema.get("required")
    if isinstance(value, dict) and isinstance(required, list) and required:
        return {k: v for k, v in value.items() if k != required[0]}
    return {"__not": "the schema's shape"} if not isinstance(value, dict) else value


def instance_of(schema: object, root: dict[str, Any], depth: int = 0) -> object:
    """A value that meets a (simple) JSON Schema: the keywords a batch's
    schemas use (type, properties, required, items, enum, const, bounds,
    lengths, anyOf/oneOf/allOf, local $ref)."""
    if not isinstance(schema, dict) or depth > _DEPTH:
        return None
    if "$ref" in schema and isinstance(schema["$ref"], str):
        return instance_of(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return instance_of(schema[key][0], root, depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = instance_of(part, root, depth + 1)
            if isinstance(value, dict):
                merged.update(value)
        return merged
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        value = {name: instance_of(sub, root, depth + 1) for name, sub in props.items()}
        required = schema.get("required")
        for name in required if isinstance(required, list) else ():
            value.setdefault(str(name), "value")
        return value
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [instance_of(schema.get("items", {}), root, depth + 1)] * count
    if kind == "string":
        length = max(int(schema.get("minLength", 0)), 5)
        text = "value"[: max(1, int(schema.get("maxLength", length)))]
        return text.ljust(length, "x") if length > len(text) else text
    if kind == "integer":
        return _number(schema, 1, int)
    if kind == "number":
        return _number(schema, 0.5, float)
    if kind == "boolean":
        return True
    return None


def _number(schema: dict[str, Any], default: float, cast: type) -> object:
    low, high = schema.get("minimum"), schema.get("maximum")
    value = default
    if isinstance(low, int | float):
        value = max(value, low)
    if isinstance(high, int | float):
        value = min(value, high)
    return cast(value)


def _resolve(ref: str, root: dict[str, Any]) -> object:
    """A local `#/$defs/name` reference."""
    node: object = root
    for part in ref.removeprefix("#").strip("/").split("/"):
        if not part:
            continue
        node = node.get(part) if isinstance(node, dict) else None
    return node
