"""The agent's YAML configuration: which files to follow in which format, where the API is, where
checkpoints live, how much to buffer and batch. Every problem is reported with the key at fault."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from auditflow.codec import describe_error_list
from auditflow.errors import ConfigError
from auditflow.yamlfile import read_mapping


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ApiConfig(_Strict):
    url: str = Field(description="Base URL of the AuditFlow instance (its ingest API), e.g. http://auditflow:8080.")
    token: SecretStr | None = Field(None, description="Bearer token; or token_file, or env AUDITFLOW_TOKEN.")
    token_file: Path | None = Field(None, description="File holding the token (a mounted Kubernetes Secret).")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds to wait for an answer to one batch.")

    def resolve_token(self) -> str:
        if self.token is not None:
            return self.token.get_secret_value()
        if self.token_file is not None:
            try:
                return self.token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"api.token_file: cannot read {self.token_file}: {exc.strerror or exc}") from None
        token = os.environ.get("AUDITFLOW_TOKEN")
        if not token:
            raise ConfigError("api: give token, token_file, or the AUDITFLOW_TOKEN environment variable")
        return token


class FileConfig(_Strict):
    path: str = Field(description="The file to follow (its rotated copies are found next to it).")
    format: str = Field("syslog", description="Log format, one of the parser formats.")
    host: str | None = Field(None, description="Host name for lines that carry none; default: the agent's host.")
    tz: str = Field("UTC", description="Zone of timestamps without one (IANA name).")
    start_at: Literal["beginning", "end"] = Field(
        "beginning", description="Where to start in a file with no checkpoint yet."
    )
    forward_unparsed: bool = Field(False, description="Send lines no parser understood as raw events.")

    @field_validator("tz")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


class BatchConfig(_Strict):
    max_events: int = Field(500, ge=1, le=10_000, description="Events per request at most.")
    linger: float = Field(1.0, ge=0, le=60, description="Seconds to wait for more lines before sending a batch.")


class BufferConfig(_Strict):
    max_lines: int = Field(10_000, ge=1, le=1_000_000, description="Lines read ahead of the API at most.")
    max_line_bytes: int = Field(64 * 1024, ge=256, le=1024 * 1024, description="Longer lines are cut.")


class RetryConfig(_Strict):
    initial: float = Field(0.5, gt=0, le=60, description="First back-off delay in seconds (jittered).")
    max: float = Field(30.0, gt=0, le=3600, description="Longest back-off delay in seconds.")


class HttpConfig(_Strict):
    host: str = Field("127.0.0.1", description="Address of the /healthz and /metrics listener.")
    port: int = Field(9108, ge=0, le=65535, description="Its port (0 picks a free one).")


class AgentConfig(_Strict):
    """`auditflow agent --config agent.yaml`; see docs/agent.md for an example."""

    api: ApiConfig
    files: list[FileConfig] = Field(min_length=1)
    checkpoint_file: Path = Field(Path("agent-checkpoints.json"), description="Where accepted offsets are kept.")
    host: str | None = Field(None, description="Host name for every file without its own; default: this machine.")
    poll_interval: float = Field(0.25, gt=0, le=60, description="Seconds between checks of each file.")
    rotate_wait: float = Field(1.0, ge=0, le=300, description="Seconds a renamed file is still read after rotation.")
    batch: BatchConfig = Field(default_factory=BatchConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    http: HttpConfig | None = Field(default_factory=HttpConfig)

    @model_validator(mode="after")
    def _distinct_paths(self) -> AgentConfig:
        seen: set[str] = set()
        for index, file in enumerate(self.files):
            if file.path in seen:
                raise ValueError(f"files.{index}.path: {file.path} is listed twice")
            seen.add(file.path)
        return self


def load_agent_config(path: Path, formats: tuple[str, ...] | None = None) -> AgentConfig:
    """Read and validate `path`; ConfigError names the file and each key at fault."""
    data = read_mapping(path, "a mapping of settings at the top")
    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        problems = describe_error_list(exc.errors(include_input=False, include_url=False))
        text = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'top level'}: {e['msg']}" for e in problems)
        raise ConfigError(f"{path}: {text}") from None
    if formats is not None:
        for index, file in enumerate(config.files):
            if file.format not in formats:
                raise ConfigError(f"{path}: files.{index}.format: {file.format!r} is not one of {', '.join(formats)}")
    return config
