"""Alert description templates: `{field}` placeholders over group values and event fields.

Templates come from rule files, which operators edit, so rendering never evaluates anything: a
placeholder is looked up by its whole name (`{details.resource}` is a path, not attribute access),
index access is refused at load time, and a missing value renders as an empty string.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from string import Formatter
from typing import Any

from auditflow.rules.fields import check_field_path

# Values the engine supplies besides event fields.
EXTRA_FIELDS = frozenset({"rule_id", "rule_name", "occurrences", "count", "window", "distinct", "distinct_values"})

_formatter = Formatter()


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and placeholders, in order."""

    parts: tuple[tuple[str, str | None, str], ...]  # (literal, field or None, format spec)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(field for _, field, _ in self.parts if field is not None)

    def render(self, lookup: Callable[[str], Any]) -> str:
        out: list[str] = []
        for literal, field, spec in self.parts:
            out.append(literal)
            if field is None:
                continue
            value = lookup(field)
            text = "" if value is None else str(value)
            if spec:
                # a spec that does not suit the value: show the value as is
                with contextlib.suppress(ValueError):
                    text = format(text, spec)
            out.append(text)
        return "".join(out)

    def render_map(self, values: Mapping[str, Any]) -> str:
        return self.render(values.get)


def parse_template(text: str) -> Template:
    """Parse and check a template; raise ValueError naming the offending placeholder."""
    try:
        parsed = list(_formatter.parse(text))
    except ValueError as exc:
        raise ValueError(f"invalid template: {exc} (write {{{{ and }}}} for literal braces)") from None
    parts: list[tuple[str, str | None, str]] = []
    for literal, field, spec, conversion in parsed:
        if field is None:
            parts.append((literal, None, ""))
            continue
        if not field or field.isdigit():
            raise ValueError("invalid template: placeholders must name a field, e.g. {user_id}")
        if "[" in field or "]" in field:
            raise ValueError(f"invalid template placeholder {{{field}}}: index access is not supported")
        if conversion or (spec and "{" in spec):
            raise ValueError(f"invalid template placeholder {{{field}}}: conversions and nested fields are unsupported")
        if field not in EXTRA_FIELDS:
            try:
                check_field_path(field)
            except ValueError as exc:
                raise ValueError(f"invalid template placeholder {{{field}}}: {exc}") from None
        parts.append((literal, field, spec or ""))
    return Template(tuple(parts))
