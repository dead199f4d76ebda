"""The rule schema: what a YAML rule file may say, validated by pydantic and compiled at load time.

Each rule is one of `MatchRule`, `ThresholdRule` or `SequenceRule` (chosen by `kind`). Conditions
are compiled into predicates while validating, so a loaded rule is ready for the hot path.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import InitErrorDetails

from auditflow.model.event import Severity
from auditflow.model.rule_metadata import (
    MAX_FALSEPOSITIVES,
    MAX_REFERENCES,
    FalsePositive,
    ReferenceUrl,
    RuleOrigin,
)
from auditflow.rules.conditions import VALUE_OPERATORS, Condition, compile_where
from auditflow.rules.fields import MAX_WINDOW, check_field_path, format_duration, parse_duration, to_ms
from auditflow.rules.template import Template, parse_template

RULE_ID_PATTERN = r"^[a-z0-9_.-]+$"
DEFAULT_SUPPRESS_FOR = timedelta(minutes=5)
MAX_COUNT = 10_000
MIN_STEPS, MAX_STEPS = 2, 16


def _positive_window(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0")
    if value > MAX_WINDOW:
        raise ValueError(f"must be at most {format_duration(MAX_WINDOW)}")
    return value


def _step_count(value: Any) -> Any:
    # Counted before the steps are validated: pydantic's own length check counts only the valid
    # ones, so one broken step of two would also read as "too few steps".
    if isinstance(value, list | tuple) and not MIN_STEPS <= len(value) <= MAX_STEPS:
        raise ValueError(f"expected {MIN_STEPS} to {MAX_STEPS} steps, got {len(value)}")
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"anyOf": [{"type": "string", "examples": ["60s", "5m", "1h"]}, {"type": "integer"}]}),
]
Window = Annotated[Duration, AfterValidator(_positive_window)]
FieldPath = Annotated[str, AfterValidator(check_field_path)]
Where = Annotated[
    Condition,
    BeforeValidator(compile_where),
    PlainSerializer(lambda c: dict(c.raw), return_type=dict),
    WithJsonSchema(
        {
            "type": "object",
            "description": (
                "field -> condition: a scalar (equals) or a mapping of operators, all of which must hold: "
                f"{', '.join(VALUE_OPERATORS)} (`ignore_case: true` beside contains, startswith and endswith, "
                "and their *_field forms, which take the path of another field of the event to compare with); "
                "the keys any, all and not combine whole condition mappings. See docs/rules.md."
            ),
        }
    ),
]
RuleSeverity = Annotated[Severity, BeforeValidator(_upper)]


class _RuleBase(BaseModel):
    """Keys every rule has."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    id: str = Field(pattern=RULE_ID_PATTERN, max_length=128, description="Unique across all rule files")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000, description="Alert text; `{field}` placeholders allowed")
    severity: RuleSeverity
    tags: tuple[str, ...] = ()
    enabled: bool = True
    suppress_for: Duration = Field(DEFAULT_SUPPRESS_FOR, description="0 disables suppression")
    group_by: tuple[FieldPath, ...] = Field((), max_length=8)
    # Metadata for analysts (docs/rules.md#metadata): never changes what the rule matches.
    references: tuple[ReferenceUrl, ...] = Field(
        (), max_length=MAX_REFERENCES, description="Links to background on what the rule detects (http/https)"
    )
    falsepositives: tuple[FalsePositive, ...] = Field(
        (), max_length=MAX_FALSEPOSITIVES, description="Known benign causes of the rule firing"
    )
    origin: RuleOrigin | None = Field(
        None, description="Where the rule came from, e.g. the Sigma rule it was made from"
    )

    @field_validator("description")
    @classmethod
    def _check_template(cls, value: str) -> str:
        parse_template(value)
        return value

    @field_validator("suppress_for")
    @classmethod
    def _check_suppress(cls, value: timedelta) -> timedelta:
        if value > MAX_WINDOW:
            raise ValueError(f"must be at most {format_duration(MAX_WINDOW)}")
        return value

    @cached_property
    def template(self) -> Template:
        return parse_template(self.description or self.name)

    @property
    def suppress_ms(self) -> int:
        return to_ms(self.suppress_for)

    @property
    def event_types(self) -> frozenset[str] | None:
        """The event types this rule can fire on, or None when it looks at every event."""
        raise NotImplementedError


class MatchRule(_RuleBase):
    """Fires on every matching event (subject to suppression per group)."""

    kind: Literal["match"]
    where: Where

    @property
    def event_types(self) -> frozenset[str] | None:
        return self.where.event_types


class ThresholdRule(_RuleBase):
    """Fires when `count` matching events of one group fall within a sliding `window`; with
    `distinct`, when they hold `count` distinct values of that field."""

    kind: Literal["threshold"]
    where: Where
    count: int = Field(ge=1, le=MAX_COUNT)
    window: Window
    distinct: FieldPath | None = Field(
        None, description="Count distinct values of this field instead of events; events without it do not count"
    )

    @property
    def event_types(self) -> frozenset[str] | None:
        return self.where.event_types


class SequenceStep(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    where: Where
    count: int = Field(1, ge=1, le=MAX_COUNT)
    group_by: tuple[FieldPath, ...] | None = Field(
        None,
        max_length=8,
        description="This step's fields for the rule's group_by, matched by position (as many); default: the rule's",
    )


class SequenceRule(_RuleBase):
    """Fires when the steps happen in order, each `count` times, within `window`, in one group;
    with `ordered: false`, when they all happen within `window`, in any order."""

    kind: Literal["sequence"]
    steps: Annotated[tuple[SequenceStep, ...], BeforeValidator(_step_count)] = Field(
        json_schema_extra={"minItems": MIN_STEPS, "maxItems": MAX_STEPS}
    )
    window: Window
    ordered: bool = Field(
        True,
        description=(
            "false: the steps may happen in any order; the rule fires when every step has its count of events "
            "within `window` in one group"
        ),
    )

    @field_validator("steps")
    @classmethod
    def _check_step_groups(cls, steps: tuple[SequenceStep, ...], info: ValidationInfo) -> tuple[SequenceStep, ...]:
        # Step keys are compared value by value, so each step must name one field per rule field.
        group_by = info.data.get("group_by")
        if group_by is None:
            return steps  # the rule's own group_by is invalid and reported already
        expected = f"{len(group_by)} field{'' if len(group_by) == 1 else 's'}"
        names = f" ({', '.join(group_by)})" if group_by else ""
        errors: list[InitErrorDetails] = [
            {
                "type": "value_error",
                "loc": (index, "group_by"),
                "input": list(step.group_by),
                "ctx": {
                    "error": ValueError(
                        f"has {len(step.group_by)}, expected {expected}: "
                        f"one for each of the rule's group_by{names}, matched by position"
                    )
                },
            }
            for index, step in enumerate(steps)
            if step.group_by is not None and len(step.group_by) != len(group_by)
        ]
        if errors:
            # Raised with each step's location, so the message names `steps.N.group_by`.
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return steps

    @property
    def step_group_by(self) -> tuple[tuple[str, ...], ...]:
        """The fields each step is grouped by: its own, or the rule's."""
        return tuple(self.group_by if step.group_by is None else step.group_by for step in self.steps)

    @property
    def event_types(self) -> frozenset[str] | None:
        pinned = [step.where.event_types for step in self.steps]
        if any(types is None for types in pinned):
            return None
        return frozenset().union(*(types for types in pinned if types is not None))


Rule = Annotated[MatchRule | ThresholdRule | SequenceRule, Field(discriminator="kind")]


class RuleFile(BaseModel):
    """A rule file as the loader reads it: a `rules:` list (a bare list is accepted too)."""

    model_config = ConfigDict(extra="forbid", title="AuditFlow rule file")

    rules: list[Rule]


RULE_KINDS: dict[str, type[MatchRule] | type[ThresholdRule] | type[SequenceRule]] = {
    "match": MatchRule,
    "threshold": ThresholdRule,
    "sequence": SequenceRule,
}
