"""Sigma values (after pySigma applied the modifiers) as AuditFlow value conditions.

Sigma compares strings case-insensitively unless the `cased` modifier says otherwise, and its
wildcards are `*` and `?`; both become regular expressions with a scoped `(?i:...)` flag, because
our `glob` and `equals` are case-sensitive. A value with no letter and no wildcard stays a plain
`equals`, which is cheaper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from auditflow.rules.sigma.errors import UnsupportedRule

Spec = dict[str, Any]

_COMPARE = {
    CompareOperators.GT: "gt",
    CompareOperators.GTE: "gte",
    CompareOperators.LT: "lt",
    CompareOperators.LTE: "lte",
}
_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: "i",
    SigmaRegularExpressionFlag.MULTILINE: "m",
    SigmaRegularExpressionFlag.DOTALL: "s",
}


def _trim(value: SigmaString) -> tuple[SigmaString, bool, bool]:
    """The string without leading and trailing `*`, and whether it had them.

    `contains` gives `*x*`: searched as `.*x.*` from every position a regular expression costs
    time quadratic in the value's length, so the wildcards at the ends become a missing anchor.
    """
    lead = trail = False
    while len(value) and value.startswith(SpecialChars.WILDCARD_MULTI):
        value, lead = value[1:], True
    while len(value) and value.endswith(SpecialChars.WILDCARD_MULTI):
        value, trail = value[:-1], True
    return value, lead, trail


def _string_body(value: SigmaString) -> str:
    """The regular expression for a Sigma string's wildcards and text, case-insensitive unless cased;
    `*` matches line breaks too, as it does in Sigma."""
    body = str(value.to_regex().regexp) if len(value) else ""
    return f"(?s:{body})" if isinstance(value, SigmaCasedString) else f"(?is:{body})"


def _literal(value: SigmaString) -> str | None:
    """The text of a string without wildcards (escapes resolved), else None."""
    return None if value.contains_special() else value.to_plain()


def _longest_literal(value: SigmaString) -> str:
    return max((part for part in value.s if isinstance(part, str)), key=len, default="")


def _substring_spec(value: SigmaString) -> Spec | None:
    """`contains`, `startswith` or `endswith` for a string whose only wildcards are at its ends:
    a substring test instead of a regular expression, case-insensitive unless cased."""
    core, lead, trail = _trim(value)
    text = _literal(core) if len(core) else None
    if not text or not (lead or trail):
        return None
    op = "contains" if lead and trail else "endswith" if lead else "startswith"
    if isinstance(value, SigmaCasedString):
        return {op: text}
    return {op: text, "ignore_case": True}


def _string_regex(value: SigmaString) -> str:
    core, lead, trail = _trim(value)
    if not len(core):
        return "^"  # `*`: any string
    return ("" if lead else "^") + _string_body(core) + ("" if trail else r"\Z")


def _is_plain(value: SigmaString) -> bool:
    plain = value.to_plain() if not value.contains_special() else None
    return plain is not None and plain.lower() == plain.upper()


def field_spec(value: SigmaType, targets: Callable[[str], tuple[str, ...]] | None = None) -> Spec:
    """The condition a field must satisfy for `field: value` to hold in Sigma. `targets` gives the
    event fields a Sigma field is read from, for a `fieldref` value (the other field)."""
    if isinstance(value, SigmaExpansion):
        return {"any": [field_spec(v, targets) for v in value.values]}
    if isinstance(value, SigmaFieldReference):
        return _reference_spec(value, targets)
    if isinstance(value, SigmaString):
        if not len(_trim(value)[0]) and len(value):
            # `field: '*'`: any value at all, also one that is not text (a number, an object).
            return {"exists": True}
        if _is_plain(value):
            return {"equals": value.to_plain()}
        plain = None if value.contains_special() else value.to_plain().lower()
        if plain in ("true", "false"):
            # `Initiated: 'true'`: the boolean of JSON sources, or the word in text ones
            return {"any": [{"equals": plain == "true"}, {"regex": _string_regex(value)}]}
        return _substring_spec(value) or {"regex": _string_regex(value)}
    if isinstance(value, SigmaBool):
        return {"equals": value.boolean}
    if isinstance(value, SigmaNumber):
        # Parsers keep some numbers as text (auditd ids), others as numbers (HTTP status codes).
        return {"in": [value.number, str(value.number)]}
    if isinstance(value, SigmaNull):
        return {"exists": False}
    if isinstance(value, SigmaExists):
        return {"exists": value.exists}
    if isinstance(value, SigmaRegularExpression):
        flags = "".join(sorted(_FLAGS[f] for f in value.flags))
        pattern = str(value.regexp)
        return {"regex": f"(?{flags}:{pattern})" if flags else pattern}
    if isinstance(value, SigmaCIDRExpression):
        return {"glob": value.expand("*")}
    if isinstance(value, SigmaCompareExpression):
        if value.op is CompareOperators.NEQ:
            return {"not": {"equals": value.number.number}}
        return {_COMPARE[value.op]: value.number.number}
    raise UnsupportedRule(f"value type {type(value).__name__} is not supported")


def _reference_spec(value: SigmaFieldReference, targets: Callable[[str], tuple[str, ...]] | None) -> Spec:
    """`fieldref`: equal to the other field, or with `contains`, `startswith`, `endswith` before it,
    holding its value (case-sensitively, as Sigma's fieldref compares)."""
    if targets is None:
        raise UnsupportedRule("fieldref (comparing two fields) needs the logsource's field mapping")
    if value.starts_with and value.ends_with:
        op = "contains_field"
    elif value.starts_with:
        op = "startswith_field"
    elif value.ends_with:
        op = "endswith_field"
    else:
        op = "equals_field"
    paths = targets(value.field)
    return {op: paths[0]} if len(paths) == 1 else {"any": [{op: path} for path in paths]}


def keyword_spec(value: SigmaType) -> Spec:
    """A keyword search: the value anywhere in the raw message (Sigma's full-text match)."""
    if isinstance(value, SigmaExpansion):
        return {"any": [keyword_spec(v) for v in value.values]}
    if isinstance(value, SigmaNumber):
        value = SigmaString(str(value.number))
    if isinstance(value, SigmaString):
        core, _, _ = _trim(value)
        if not len(core):
            return {"regex": "^"}
        cased = isinstance(value, SigmaCasedString)
        text = _literal(core)
        if text is not None:
            return {"contains": text} if cased else {"contains": text, "ignore_case": True}
        # Wildcards inside: the regex decides, but only after its longest literal part was found,
        # which is also what lets the detector skip the rule for lines without it.
        longest = _longest_literal(core)
        spec: Spec = {"contains": longest} if cased else {"contains": longest, "ignore_case": True}
        return {**spec, "regex": _string_body(core)} if longest else {"regex": _string_body(core)}
    if isinstance(value, SigmaRegularExpression):
        return field_spec(value)
    raise UnsupportedRule(f"keyword of type {type(value).__name__} is not supported")
