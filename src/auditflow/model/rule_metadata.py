"""What a rule says about itself besides its detection: references, known false positives and where
it came from (a converted Sigma rule's id, title and level). None of it changes what the rule
matches; analysts see it on the alert and on the rules page, and it makes a converted Sigma rule
traceable to its source without comments in the file.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_REFERENCES = 32
MAX_URL_LENGTH = 2000
MAX_FALSEPOSITIVES = 32
MAX_FALSEPOSITIVE_LENGTH = 500
SigmaLevel = Literal["informational", "low", "medium", "high", "critical"]
SigmaStatus = Literal["stable", "test", "experimental", "deprecated", "unsupported"]


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL without whitespace: a link an analyst can follow safely (a
    `javascript:` or `data:` URL would run in the dashboard)."""
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. an invalid IPv6 host
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in value)


def _http_url(value: str) -> str:
    if not is_http_url(value):
        raise ValueError("expected an http:// or https:// URL with a host and no whitespace")
    return value


ReferenceUrl = Annotated[
    str,
    Field(max_length=MAX_URL_LENGTH, json_schema_extra={"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://\\S+$"}),
    AfterValidator(_http_url),
]
FalsePositive = Annotated[str, Field(min_length=1, max_length=MAX_FALSEPOSITIVE_LENGTH)]


class RuleOrigin(BaseModel):
    """Where a rule came from; written by the Sigma conversion, or by hand for a rule ported from Sigma."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="RuleOrigin")

    kind: Literal["sigma"] = Field(description="What the rule was made from: `sigma`, a Sigma rule")
    id: str | None = Field(None, max_length=128, description="The Sigma rule's id (a UUID)")
    title: str | None = Field(None, max_length=300, description="The Sigma rule's title")
    level: SigmaLevel | None = Field(None, description="The Sigma level, which the severity was derived from")
    status: SigmaStatus | None = Field(None, description="The Sigma rule's maturity")
    file: str | None = Field(None, max_length=300, description="Name of the Sigma file the rule was converted from")
