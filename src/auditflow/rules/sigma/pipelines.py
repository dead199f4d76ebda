"""Named pySigma processing pipelines, applied to Sigma rules before AuditFlow's own mapping.

`auditflow` is the built-in mapping of logsources and fields (logsources.py), always applied last;
naming it changes nothing. Any other name is a pySigma pipeline YAML file (field renames, logsource
changes, ...) or a pipeline of an installed pySigma plugin. A Sigma file may name its own
pipelines in a leading comment, `# auditflow-sigma-pipeline: NAME_OR_FILE[, ...]`, a file
relative to the Sigma file; they apply to that file's rules after the ones given for the import.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path

import yaml
from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingPipeline

BUILTIN = "auditflow"
DIRECTIVE = "auditflow-sigma-pipeline"
_DIRECTIVE = re.compile(rf"#\s*{DIRECTIVE}\s*:\s*(.*?)\s*$")
MAX_PIPELINE_BYTES = 1024 * 1024


class PipelineError(Exception):
    """A pipeline that cannot be used: an unknown name, an unreadable or invalid YAML file."""


@cache
def _plugin_pipelines() -> dict[str, Callable[[], ProcessingPipeline]]:
    """The pipelines of installed pySigma plugins (`pySigma-pipeline-*` packages), by name."""
    from sigma.plugins import InstalledSigmaPlugins

    return dict(InstalledSigmaPlugins.autodiscover(include_backends=False, include_validators=False).pipelines)


def _from_file(path: Path) -> ProcessingPipeline:
    try:
        data = path.read_bytes()
        if len(data) > MAX_PIPELINE_BYTES:
            raise PipelineError(f"pipeline {path}: larger than {MAX_PIPELINE_BYTES} bytes")
        text = data.decode("utf-8")
        # read here first for an error with its line; pySigma's own says only that parsing failed
        if not isinstance(yaml.safe_load(text), dict):
            raise PipelineError(f"pipeline {path}: not a pySigma processing pipeline: expected a mapping")
        return ProcessingPipeline.from_yaml(text, source_path=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"pipeline {path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise PipelineError(f"pipeline {path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    except (SigmaError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise PipelineError(f"pipeline {path}: not a pySigma processing pipeline: {exc}") from None


def resolve(spec: str, base: Path | None = None) -> ProcessingPipeline | None:
    """The pipeline a name stands for; None for the built-in one. A file name is relative to `base`."""
    name = spec.strip()
    if not name or name == BUILTIN:
        return None
    path = Path(name).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if path.is_file():
        return _from_file(path)
    plugins = _plugin_pipelines()
    if name in plugins:
        return plugins[name]()
    if path.suffix in (".yml", ".yaml") or "/" in name:
        raise PipelineError(f"pipeline {path}: no such file")
    known = ", ".join([BUILTIN, *sorted(plugins)])
    raise PipelineError(
        f"unknown pipeline {name!r}: name a pySigma pipeline YAML file or one of the installed pipelines ({known})"
    )


def load(specs: Sequence[str], base: Path | None = None) -> list[ProcessingPipeline]:
    """The pipelines named (the built-in one is no pipeline of its own)."""
    return [p for spec in specs if (p := resolve(spec, base)) is not None]


def chain(pipelines: Sequence[ProcessingPipeline]) -> ProcessingPipeline | None:
    """Pipelines as one, in pySigma's order (by priority, then as given); None if there are none."""
    if not pipelines:
        return None
    ordered = sorted(pipelines, key=lambda pipeline: pipeline.priority)
    combined = ordered[0]
    for pipeline in ordered[1:]:
        combined = combined + pipeline
    return combined


def file_directive(text: str) -> list[str]:
    """The pipelines a Sigma file names in a comment line before its first YAML line."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        match = _DIRECTIVE.match(stripped)
        if match is not None:
            return [name for part in match.group(1).split(",") if (name := part.strip())]
    return []
