"""Response contracts for readiness and the loaded rules, shared by the API and the dashboard."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from auditflow.model.event import Severity
from auditflow.model.rule_metadata import RuleOrigin
from auditflow.model.timeutil import UtcDatetime


class DependencyStatus(BaseModel):
    name: str = Field(description="broker, state, store, rules, ...")
    status: Literal["up", "down"]
    critical: bool = Field(description="When a critical dependency is down, /readyz answers 503")
    detail: str | None = Field(None, description="Backend URL scheme and host, without credentials")
    last_error: str | None = None
    last_change: UtcDatetime | None = None
    impact: str | None = Field(None, description="What does not work while this dependency is down")


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "not_ready"]
    service: str
    dependencies: list[DependencyStatus]


class RuleInfo(BaseModel):
    id: str
    name: str
    description: str
    kind: Literal["match", "threshold", "sequence"]
    severity: Severity
    tags: list[str]
    enabled: bool
    suppress_for_seconds: float
    window_seconds: float | None = None
    group_by: list[str] = Field(default_factory=list)
    source: str | None = Field(None, description="File the rule was loaded from")
    references: list[str] = Field(default_factory=list, description="Links to background on what the rule detects")
    falsepositives: list[str] = Field(default_factory=list, description="Known benign causes of the rule firing")
    origin: RuleOrigin | None = Field(
        None, description="Where the rule came from (e.g. the Sigma rule it was made from)"
    )


class RulesStatus(BaseModel):
    rules: list[RuleInfo]
    version: str | None = Field(None, description="Content hash of the active rule set")
    source: str | None = None
    loaded_at: UtcDatetime | None = None
    last_error: str | None = Field(None, description="Why the last reload failed; the previous rules stay active")
    warnings: list[str] = Field(
        default_factory=list,
        description="Rules of the files that were not loaded (Sigma rules AuditFlow cannot evaluate), with the reason",
    )
