"""A prompt template: each row of a table rendered into a user message.

Jinja2's immutable sandbox with strict undefined variables: a template reaches
the row's values (each column by name, and the whole row as `row`) and nothing
else: no attribute that starts with an underscore, no Python internals, no
environment, so the API key is out of its reach. What can be checked before a
request is checked at load (exit 2): the syntax, the columns it uses against
the header, and any reach for an underscored attribute.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from worker.errors import ConfigError

if TYPE_CHECKING:
    # Imported when a template is made: a run of JSONL jobs (most runs) would
    # spend a twentieth of a second of its start loading Jinja2 for nothing.
    import jinja2
    import jinja2.nodes
    import jinja2.sandbox

ROW = "row"  # the whole row, for columns whose names are no identifiers
_SAFE_GLOBALS = ("dict", "range")


class RowError(ValueError):
    """A row the template cannot render: a variable missing or empty, or a
    value the template cannot use."""


@dataclass(frozen=True, slots=True)
class Template:
    """A loaded, checked template."""

    name: str
    compiled: jinja2.Template
    variables: frozenset[str]  # the columns it uses by name (not `row`)

    def render(self, row: Mapping[str, object]) -> str:
        """The user message for `row`.

        Raises:
            RowError: a variable it uses is missing or empty in the row, or
                rendering failed (a sandbox refusal, a value of the wrong kind).
        """
        for name in sorted(self.variables):
            value = row.get(name)
            if value is None:
                raise RowError(f"the variable {name!r} is missing")
            if isinstance(value, str) and not value.strip():
                raise RowError(f"the variable {name!r} is empty")
        from jinja2 import TemplateError  # loaded already: this template is one

        try:
            return self.compiled.render({**row, ROW: row})
        except TemplateError as exc:
            raise RowError(f"the template cannot render it: {exc}") from None
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise RowError(f"the template cannot render it: {exc}") from None

    def check_columns(self, columns: Iterable[str], *, source: str) -> None:
        """Every variable the template uses is a column of the header.

        Raises:
            ConfigError: one is not (it is named, with the header's columns).
        """
        known = set(columns)
        missing = sorted(self.variables - known)
        if missing:
            raise ConfigError(
                f"the template {self.name} uses {', '.join(map(repr, missing))}, "
                f"which the header of {source} lacks (its columns: "
                f"{', '.join(map(repr, sorted(known))) or 'none'})"
            )


def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    import jinja2.sandbox

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )
    env.globals = {name: env.globals[name] for name in _SAFE_GLOBALS}
    return env


def _reaches_inside(tree: jinja2.nodes.Template) -> str | None:
    """An underscored attribute the template asks for, if any (the sandbox
    refuses it anyway, but only at render: this is said before any request)."""
    import jinja2.nodes

    for node in tree.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        name = node.attr if isinstance(node, jinja2.nodes.Getattr) else None
        if isinstance(node, jinja2.nodes.Getitem) and isinstance(
            node.arg, jinja2.nodes.Const
        ):
            name = node.arg.value if isinstance(node.arg.value, str) else None
        if name is not None and name.startswith("_"):
            return name
    for node in tree.find_all(jinja2.nodes.Filter):
        if node.name == "attr":
            return "an attribute by name (the attr filter)"
    return None


def load_template(path: Path) -> Template:
    """Read, parse and check a template file.

    Raises:
        ConfigError: unreadable, a syntax error (its line named), or a reach
            for Python internals.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the template {path}: {reason}") from None
    return make_template(text, name=str(path))


def make_template(text: str, *, name: str = "template") -> Template:
    """A template from its text (see load_template).

    Raises:
        ConfigError: a syntax error, or a reach for Python internals.
    """
    import jinja2.meta

    env = _environment()
    try:
        tree = env.parse(text, name=name)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"the template {name} has a syntax error on line {exc.lineno}: "
            f"{exc.message}"
        ) from None
    if (inside := _reaches_inside(tree)) is not None:
        raise ConfigError(
            f"the template {name} reaches for {inside}: a template may use the "
            "row's values only"
        )
    if not text.strip():
        raise ConfigError(f"the template {name} is empty")
    variables = jinja2.meta.find_undeclared_variables(tree) - {ROW, *env.globals}
    return Template(name, env.from_string(tree), frozenset(variables))
