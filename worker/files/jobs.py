"""One input line (or table row) -> one Job: both line shapes, a row through its
template, validated as Mira validates a request (CONTRACT section 4): a body of
at most 2 MiB, messages of at most 32,000 characters, and no API key in them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial

import orjson

from worker.config import KEY_PATTERN, Settings
from worker.domain.job import Job
from worker.domain.schema import Schema, SchemaError, from_response_format, make_schema
from worker.domain.usage import words
from worker.errors import ConfigError, InvalidJobError, KeyInPromptError
from worker.files.shapes import (
    body_from_line,
    check_messages,
    load_object,
    read_job_id,
)
from worker.files.tables import EXTRA_FIELDS, RowShapeError
from worker.files.template import RowError, Template

# Mira caps output at 16,384 tokens; a job that says nothing is assumed to ask for less.
DEFAULT_COMPLETION_ESTIMATE = 256
# Mira refuses a body over 2 MiB (413) and a message over 32,000 characters (422).
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_CONTENT_CHARS = 32_000


def estimate_prompt_tokens(messages: list[dict[str, object]]) -> int:
    """As Mira counts (and bills) a prompt: whitespace-separated words."""
    count = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            count += sum(words(p.get("text")) for p in content if isinstance(p, dict))
        else:
            count += words(content)
    return count


def fold_system(messages: list[dict[str, object]]) -> list[dict[str, object]]:
    """System messages folded into the first user message, which Mira keeps
    (it drops system messages before the model sees them)."""
    system = [m for m in messages if m.get("role") == "system"]
    rest = [dict(m) for m in messages if m.get("role") != "system"]
    first_user = next((m for m in rest if m.get("role") == "user"), None)
    if not system or first_user is None:
        return messages
    if not isinstance(user_text := first_user["content"], str):
        return messages
    texts = [text for m in system if isinstance(text := m.get("content"), str)]
    first_user["content"] = "\n\n".join([*texts, user_text])
    return rest


def messages_of(body: dict[str, object]) -> list[dict[str, object]]:
    """The messages of a body that check_messages passed: a list of objects.

    Raises:
        TypeError: the body was never checked (a bug, not a bad line).
    """
    messages = body["messages"]
    if not isinstance(messages, list):
        raise TypeError("a request body whose messages were never checked")
    return messages


@dataclass(frozen=True, slots=True)
class Rules:
    """How a line becomes a request: the run's settings that shape every one."""

    model: str = "mira"  # for jobs that name none
    system_as_user: bool = False  # fold system messages in (Mira drops them)
    schema: Schema | None = None  # --json-schema, for jobs without their own
    max_tokens: int | None = None  # --max-tokens, for jobs that set none
    temperature: float | None = None  # --temperature, likewise


DEFAULT_RULES = Rules()


def rules_for(settings: Settings) -> Rules:
    """The rules the settings give, the --json-schema file read and checked.

    Raises:
        ConfigError: the schema file cannot be read, or is no JSON Schema.
    """
    schema = None
    if (path := settings.json_schema) is not None:
        try:
            document = orjson.loads(path.read_bytes())
        except OSError as exc:
            raise ConfigError(
                f"cannot read --json-schema {path}: {exc.strerror}"
            ) from None
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"--json-schema {path} is not JSON: {exc}") from None
        try:
            schema = make_schema(path.stem, document)
        except SchemaError as exc:
            raise ConfigError(f"--json-schema {path}: {exc}") from None
    return Rules(
        settings.model,
        settings.system_as_user,
        schema,
        settings.max_tokens,
        settings.temperature,
    )


@dataclass(frozen=True, slots=True)
class Line:
    """What an input line says, as far as it reads: its id, model and metadata,
    the request body it asks for and the schema its answer must meet, or why
    it is no job."""

    job_id: str | None
    model: str
    metadata: dict[str, object] | None
    body: dict[str, object] | None = None
    error: InvalidJobError | None = None
    schema: Schema | None = None


def read_line(raw: bytes, line_no: int, rules: Rules = DEFAULT_RULES) -> Line:
    """The one reader of an input line: run and validate build the job from it
    (parse_job), collect reads its id, model, metadata and schema."""
    try:
        obj = load_object(raw, line_no)
    except InvalidJobError as exc:
        return Line(None, rules.model, None, error=exc)
    job_id, problem = read_job_id(obj, line_no)
    metadata = obj.get("metadata")
    body, body_problem = body_from_line(obj)
    model = (body or obj).get("model")
    model = model if isinstance(model, str) and model else rules.model
    problem = problem or body_problem
    if problem is None and body is not None:
        problem = check_messages(body.get("messages"))
    if metadata is not None and not isinstance(metadata, dict):
        problem = problem or "metadata must be an object"
        metadata = None
    schema = rules.schema
    if body is not None and "response_format" in body:
        try:
            schema = from_response_format(body["response_format"])
        except SchemaError as exc:
            problem = problem or f"response_format: {exc}"
    if problem is not None or body is None or job_id is None:
        error = InvalidJobError(
            problem or "invalid job", line_no=line_no, job_id=job_id
        )
        return Line(job_id, model, metadata, error=error, schema=schema)
    if rules.system_as_user:
        body["messages"] = fold_system(messages_of(body))
    return Line(job_id, model, metadata, body, schema=schema)


def read_id(raw: bytes, line_no: int) -> str | None:
    """Only the id of an input line, when it reads as one: enough to tell its
    shard and whether it is done, without building its request."""
    try:
        return read_job_id(load_object(raw, line_no), line_no)[0]
    except InvalidJobError:
        return None


def parse_job(raw: bytes, line_no: int, rules: Rules = DEFAULT_RULES) -> Job:
    """Parse one non-blank input line into the request it asks for.

    Raises:
        InvalidJobError: the line cannot become a request; carries its line number.
    """
    line = read_line(raw, line_no, rules)
    if line.error is not None:
        raise line.error
    assert line.job_id is not None
    assert line.body is not None
    return build_job(
        line.job_id, line.body, line.metadata, line_no, rules, schema=line.schema
    )


def ask_for_schema(body: dict[str, object], schema: Schema) -> None:
    """Ask for the schema where Mira listens, the end of the last user message
    (it ignores `response_format` and drops system messages), and in
    `response_format` too, for servers that honour it."""
    body.setdefault("response_format", schema.response_format())
    messages = messages_of(body)
    last = next(
        (i for i in range(len(messages) - 1, -1, -1) if messages[i]["role"] == "user"),
        None,
    )
    if last is None:
        messages.append({"role": "user", "content": schema.instruction().lstrip()})
        return
    message = messages[last] = dict(messages[last])
    content = message["content"]
    if isinstance(content, str):
        message["content"] = content + schema.instruction()
    elif isinstance(content, list):  # parts, as check_messages allows
        message["content"] = [*content, {"type": "text", "text": schema.instruction()}]


def build_job(
    job_id: str,
    body: dict[str, object],
    metadata: dict[str, object] | None,
    line_no: int,
    rules: Rules,
    *,
    schema: Schema | None = None,
) -> Job:
    """The request a valid line (or row) asks for, as it will be sent.

    Raises:
        InvalidJobError: a bad model, or a body that cannot be sent or recorded.
    """
    model = body.get("model")
    if model is None:
        body["model"] = model = rules.model
    elif not isinstance(model, str) or not model:
        raise InvalidJobError("model must be a string", line_no=line_no, job_id=job_id)
    if rules.max_tokens is not None and "max_completion_tokens" not in body:
        body.setdefault("max_tokens", rules.max_tokens)
    if rules.temperature is not None:
        body.setdefault("temperature", rules.temperature)
    # A batch client wants one JSON body, never a stream without usage.
    body.pop("stream", None)
    if schema is not None:
        ask_for_schema(body, schema)
    messages = messages_of(body)
    if (problem := _as_mira_checks(messages)) is not None:
        raise problem(line_no=line_no, job_id=job_id)
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    completion_est = (
        max_tokens
        if isinstance(max_tokens, int) and max_tokens > 0
        else DEFAULT_COMPLETION_ESTIMATE
    )
    try:
        payload = orjson.dumps(body)
        # Sorted keys, no whitespace: the same request gives the same hash
        # however its line spelled it.
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
        if metadata is not None:
            # Checked as it will sit in the output line, one level down.
            orjson.dumps({"metadata": metadata})
    except orjson.JSONEncodeError as exc:
        raise InvalidJobError(
            f"cannot be sent or recorded: {exc}", line_no=line_no, job_id=job_id
        ) from None
    if len(payload) > MAX_BODY_BYTES:
        raise InvalidJobError(
            f"the request is {len(payload):,} bytes; Mira refuses a body over "
            f"{MAX_BODY_BYTES:,} (413): it was not sent",
            line_no=line_no,
            job_id=job_id,
        )
    return Job(
        id=job_id,
        model=model,
        payload=payload,
        metadata=metadata,
        prompt_tokens_est=estimate_prompt_tokens(messages),
        completion_tokens_est=completion_est,
        system_messages=sum(1 for m in messages if m["role"] == "system"),
        fingerprint=hashlib.sha256(canonical).hexdigest(),
        line=line_no,
        schema=schema,
    )


def _as_mira_checks(
    messages: list[dict[str, object]],
) -> Callable[..., InvalidJobError] | None:
    """What Mira would refuse in these messages, as the error to raise: a
    message over 32,000 characters, or a string shaped like an API key (which
    must never leave in a prompt: it would sit in Mira's logs and the model's
    context, and could be echoed into the results)."""
    for index, message in enumerate(messages):
        for text in _texts(message.get("content")):
            if KEY_PATTERN.search(text):
                return partial(
                    KeyInPromptError,
                    f"messages[{index}] carries a string shaped like a Mira API key "
                    "(sk-mira-...); it was not sent, and a key seen in a prompt is "
                    "to be treated as leaked",
                )
            if len(text) > MAX_CONTENT_CHARS:
                return partial(
                    InvalidJobError,
                    f"messages[{index}].content is {len(text):,} characters; Mira "
                    f"refuses over {MAX_CONTENT_CHARS:,} (422): it was not sent",
                )
    return None


def _texts(content: object) -> Iterator[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            text = part.get("text") if isinstance(part, dict) else None
            if isinstance(text, str):
                yield text


def row_job(
    number: int,
    row: Mapping[str, object],
    template: Template,
    rules: Rules,
    *,
    id_column: str | None = None,
) -> Job:
    """The request a table row asks for: its template rendered into the user
    message, at the run's model and parameters.

    Raises:
        InvalidJobError: no id in the id column, a variable missing or empty, a
            template that cannot render it, or a request Mira would refuse.
    """
    job_id = row_id(number, row, id_column)
    if job_id is None:
        raise InvalidJobError(
            f"no id in the column {id_column!r}",
            line_no=number,
            job_id=None,
        )
    if isinstance(extra := row.get(EXTRA_FIELDS), RowShapeError):
        raise InvalidJobError(
            f"{extra.fields} fields where the header has {extra.columns} columns",
            line_no=number,
            job_id=job_id,
        )
    try:
        text = template.render(row)
    except RowError as exc:
        raise InvalidJobError(str(exc), line_no=number, job_id=job_id) from None
    body: dict[str, object] = {"messages": [{"role": "user", "content": text}]}
    return build_job(job_id, body, None, number, rules, schema=rules.schema)


def row_id(number: int, row: Mapping[str, object], id_column: str | None) -> str | None:
    """A row's id: its id column's value (None when it has none), else
    `row-N`, its number."""
    if id_column is None:
        return f"row-{number}"
    value = row.get(id_column)
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def last_user_message(job: Job) -> str:
    """The text of the last user message a job sends (what a template rendered)."""
    messages = orjson.loads(job.payload).get("messages") or []
    for message in reversed(messages):
        if message.get("role") == "user":
            return "\n".join(_texts(message.get("content")))
    return ""
