"""Load rule files into a validated `RuleSet`, collecting every problem of every file at once.

A path is one YAML file or a directory of them (`*.yaml`/`*.yml`, sorted, symlinks followed so a
Kubernetes ConfigMap volume works). Problems read `FILE: rule 'ID': FIELD: MESSAGE`, one per line.
Files named `*.sigma.yml`/`*.sigma.yaml` hold Sigma rules, converted on load (pySigma, the
`auditflow[sigma]` extra): a Sigma rule AuditFlow cannot evaluate is a warning, not a problem, so
the other rules still load; broken Sigma is a problem like broken YAML. A file of Kubernetes
AuditRule objects (one per YAML document, or a `List` as `kubectl get auditrules -o yaml` prints it)
holds one rule per object, its `spec`; problems then name the object too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from auditflow.errors import RuleError
from auditflow.rules.k8s import is_k8s_document, object_rules
from auditflow.rules.ruleset import RuleSet
from auditflow.rules.schema import RULE_KINDS, Rule

DEFAULT_RULES_DIR = Path(__file__).with_name("default")
RULE_FILE_SUFFIXES = (".yaml", ".yml")
SIGMA_FILE_SUFFIXES = (".sigma.yaml", ".sigma.yml")
MAX_RULE_FILE_BYTES = 1024 * 1024


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses duplicate keys, which PyYAML would otherwise silently overwrite."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(slots=True)
class _Collected:
    rules: list[Rule]
    sources: dict[str, str]
    problems: list[str]
    digest: Any  # hashlib object; its type is private
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """What checking rule files found: problems stop them from loading, warnings do not; `rules` are
    the valid ones, in file order."""

    problems: list[str]
    warnings: list[str]
    rules: list[Rule] = field(default_factory=list)


def rule_files(path: Path) -> list[Path]:
    """The rule files a path stands for: itself, or the YAML files directly inside it, by name."""
    if not path.is_dir():
        return [path]
    return sorted(
        (
            entry
            for entry in path.iterdir()
            if not entry.name.startswith(".") and entry.suffix in RULE_FILE_SUFFIXES and entry.is_file()
        ),
        key=lambda entry: entry.name,
    )


def load_rules(path: Path | None) -> RuleSet:
    """Load and validate every rule under `path` (None: the shipped default pack); raise RuleError."""
    source = path if path is not None else DEFAULT_RULES_DIR
    collected = _collect([source])
    if collected.problems:
        raise RuleError("\n".join(collected.problems))
    return RuleSet.build(
        collected.rules,
        version=collected.digest.hexdigest()[:16],
        source=str(source),
        sources=collected.sources,
        warnings=collected.warnings,
    )


def check_files(paths: Sequence[Path]) -> list[str]:
    """Every problem in the given files and directories (empty: all valid)."""
    return _collect(paths).problems


def check_rules(paths: Sequence[Path]) -> RuleCheck:
    """Problems and warnings (Sigma rules not loaded) of the given files, for `auditflow rules check`."""
    collected = _collect(paths)
    return RuleCheck(problems=collected.problems, warnings=collected.warnings, rules=collected.rules)


def is_sigma_file(file: Path) -> bool:
    return file.name.endswith(SIGMA_FILE_SUFFIXES)


def _collect(paths: Sequence[Path]) -> _Collected:
    out = _Collected(rules=[], sources={}, problems=[], digest=hashlib.sha256())
    owners = out.sources
    places: dict[str, str] = {}  # rule id -> the file, and the object of a file of AuditRule objects
    for path in paths:
        if not path.exists():
            out.problems.append(f"{path}: no such file or directory")
            continue
        files = rule_files(path)
        if not files:
            out.problems.append(f"{path}: no rule files (*.yaml, *.yml) in this directory")
        # Converted together, so a correlation may reference rules of another Sigma file.
        sigma = _convert_sigma([file for file in files if is_sigma_file(file)], out)
        for file in files:
            if is_sigma_file(file):
                loaded: list[tuple[Rule, str | None]] = [
                    (r, None)
                    for i, item in enumerate(sigma.get(file, []))
                    if (r := _validate_rule(item, i, file, out.problems))
                ]
            else:
                loaded = _load_file(file, out)
            for rule, where in loaded:
                place = f"{file}: {where}" if where else str(file)
                if rule.id in places:
                    out.problems.append(
                        f"{place}: rule '{rule.id}': id: duplicate, already defined in {places[rule.id]}"
                    )
                    continue
                places[rule.id] = place
                owners[rule.id] = str(file)
                out.rules.append(rule)
    return out


def _read(file: Path, out: _Collected) -> str | None:
    try:
        data = file.read_bytes()
        if len(data) > MAX_RULE_FILE_BYTES:
            out.problems.append(f"{file}: larger than {MAX_RULE_FILE_BYTES} bytes")
            return None
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        out.problems.append(f"{file}: cannot read: {exc}")
        return None
    out.digest.update(file.name.encode() + b"\0" + data + b"\0")
    return text


def _convert_sigma(files: list[Path], out: _Collected) -> dict[Path, list[dict[str, Any]]]:
    """The rules converted from each Sigma file; broken Sigma is a problem, unsupported a warning."""
    texts = [(file, text) for file in files if (text := _read(file, out)) is not None]
    if not texts:
        return {}
    try:
        from auditflow.rules.sigma.importer import convert_texts
    except ImportError as exc:
        out.problems.extend(
            f"{file}: Sigma rules need pySigma: pip install 'auditflow[sigma]' ({exc})" for file, _ in texts
        )
        return {}
    converted: dict[Path, list[dict[str, Any]]] = {}
    for outcome in convert_texts(texts).outcomes:
        label = f"Sigma rule '{outcome.sigma_id or outcome.title}'"
        if outcome.status == "broken":
            where = "" if outcome.title == "-" else f"{label}: "
            out.problems.append(f"{outcome.path}: {where}{outcome.reason}")
        elif outcome.status == "unsupported":
            out.warnings.append(f"{outcome.path}: {label}: not loaded, unsupported: {outcome.reason}")
        elif outcome.converted is not None:
            converted.setdefault(outcome.path, []).append(outcome.converted.rule)
    return converted


def _load_file(file: Path, out: _Collected) -> list[tuple[Rule, str | None]]:
    """The valid rules of a file, each with the AuditRule object it came from (None in a plain rule file)."""
    text = _read(file, out)
    if text is None:
        return []
    try:
        documents = list(yaml.load_all(text, Loader=_UniqueKeyLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        out.problems.append(f"{file}: {where}invalid YAML: {exc.problem or exc}")
        return []
    except yaml.YAMLError as exc:
        out.problems.append(f"{file}: invalid YAML: {exc}")
        return []
    rules: list[tuple[Rule, str | None]] = []
    if any(is_k8s_document(document) for document in documents):
        for found in object_rules(documents, out.problems, str(file)):
            rule = _validate_rule(found.spec, 0, file, out.problems, where=found.label)
            if rule is not None:
                rules.append((rule, found.label))
        return rules
    if len(documents) > 1:
        out.problems.append(
            f"{file}: {len(documents)} YAML documents: a rule file holds one, unless they are AuditRule objects"
        )
        return []
    items = _rule_items(documents[0] if documents else None, file, out.problems)
    for index, item in enumerate(items):
        rule = _validate_rule(item, index, file, out.problems)
        if rule is not None:
            rules.append((rule, None))
    return rules


def _rule_items(document: Any, file: Path, problems: list[str]) -> list[Any]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        extra = sorted(str(key) for key in document if key != "rules")
        if extra:
            problems.append(f"{file}: unknown top-level key(s) {', '.join(extra)}: a file holds `rules: [...]`")
        rules = document.get("rules")
        if isinstance(rules, list):
            return rules
        problems.append(f"{file}: rules: expected a list of rules")
        return []
    problems.append(f"{file}: expected `rules: [...]` or a list of rules")
    return []


def _validate_rule(item: Any, index: int, file: Path, problems: list[str], where: str | None = None) -> Rule | None:
    """The rule `item` validated; problems read `FILE: [where: ]rule 'ID': field: message`."""
    prefix = f"{file}: {where}: " if where else f"{file}: "
    if not isinstance(item, dict):
        problems.append(f"{prefix}rule #{index + 1}: expected a mapping, got {type(item).__name__}")
        return None
    raw_id = item.get("id")
    label = f"rule '{raw_id}'" if isinstance(raw_id, str) and raw_id else "rule" if where else f"rule #{index + 1}"
    kind = item.get("kind")
    model = RULE_KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(RULE_KINDS)
        problems.append(f"{prefix}{label}: kind: expected one of {known}, got {kind!r}")
        return None
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        problems.extend(f"{prefix}{label}: {_describe(error)}" for error in exc.errors())
        return None


def _describe(error: Any) -> str:
    loc = ".".join(str(part) for part in error["loc"])
    cause = error.get("ctx", {}).get("error")
    message = str(cause) if isinstance(cause, ValueError) else error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required"
    return f"{loc}: {message}" if loc else message
