"""Hot reload: file edits, a Kubernetes ConfigMap symlink swap, and a bad file keeping the old rules."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from auditflow.errors import RuleError
from auditflow.rules import RuleSet, RuleWatcher
from tests.sigma.helpers import k8s_rule

RULE = """rules:
  - id: {id}
    name: Rule {id}
    kind: match
    severity: WARNING
    where: {{event_type: user_login}}
"""


def rule_text(rule_id: str) -> str:
    return RULE.format(id=rule_id)


def metric(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def ids(watcher: RuleWatcher) -> list[str]:
    return [rule.id for rule in watcher.ruleset.rules]


async def test_start_loads_and_a_changed_file_is_reloaded(tmp_path: Path) -> None:
    file = tmp_path / "rules.yaml"
    file.write_text(rule_text("first"))
    seen: list[RuleSet] = []
    watcher = RuleWatcher(tmp_path, 60, on_change=seen.append)
    async with watcher:
        assert ids(watcher) == ["first"]
        assert metric("auditflow_rules_loaded") == 1
        assert not await watcher.poll()  # nothing changed

        file.write_text(rule_text("second-rule"))
        assert await watcher.poll()
        assert ids(watcher) == ["second-rule"]
        assert [ruleset.rules[0].id for ruleset in seen] == ["second-rule"]
        assert watcher.last_error is None
        assert watcher.last_reload_at is not None


async def test_async_on_change_callbacks_are_awaited(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(rule_text("a"))
    seen: list[str] = []

    async def on_change(ruleset: RuleSet) -> None:
        seen.append(ruleset.version)

    async with RuleWatcher(tmp_path, 60, on_change=on_change) as watcher:
        (tmp_path / "more.yaml").write_text(rule_text("b"))
        assert await watcher.poll()
        assert seen == [watcher.ruleset.version]


async def test_kubernetes_configmap_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    old, new = tmp_path / "..2026_01_01_00_00_00.1", tmp_path / "..2026_01_01_00_05_00.2"
    old.mkdir()
    new.mkdir()
    (old / "auth.yaml").write_text(rule_text("old1"))
    (new / "auth.yaml").write_text(rule_text("new1"))  # same size; give it the same mtime too
    stat = (old / "auth.yaml").stat()
    os.utime(new / "auth.yaml", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.symlink(old.name, tmp_path / "..data")
    os.symlink("..data/auth.yaml", tmp_path / "auth.yaml")

    async with RuleWatcher(tmp_path, 60) as watcher:
        assert ids(watcher) == ["old1"]
        # What the kubelet does: a new timestamped directory, then an atomic rename of `..data`.
        os.symlink(new.name, tmp_path / "..data_tmp")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        assert await watcher.poll()
        assert ids(watcher) == ["new1"]


async def test_a_bad_file_keeps_the_previous_rules(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = tmp_path / "rules.yaml"
    file.write_text(rule_text("good"))
    async with RuleWatcher(tmp_path, 60) as watcher:
        version = watcher.ruleset.version
        errors_before = metric("auditflow_rules_reloads_total", {"result": "error"})

        file.write_text(rule_text("good").replace("WARNING", "LOUD"))
        with caplog.at_level(logging.ERROR, logger="auditflow.rules"):
            assert not await watcher.poll()

        assert watcher.ruleset.version == version
        assert watcher.last_error is not None
        assert f"{file}: rule 'good': severity:" in watcher.last_error
        assert watcher.status().last_error == watcher.last_error
        assert metric("auditflow_rules_reloads_total", {"result": "error"}) == errors_before + 1
        assert metric("auditflow_rules_last_reload_ok") == 0
        assert any(r.name == "auditflow.rules" and str(file) in r.getMessage() for r in caplog.records)
        assert not await watcher.poll()  # unchanged bad file: not reported again
        assert metric("auditflow_rules_reloads_total", {"result": "error"}) == errors_before + 1

        file.write_text(rule_text("fixed"))
        assert await watcher.poll()
        assert ids(watcher) == ["fixed"]
        assert watcher.last_error is None
        assert metric("auditflow_rules_last_reload_ok") == 1


async def test_reverting_a_bad_file_clears_the_error_without_a_change(tmp_path: Path) -> None:
    file = tmp_path / "rules.yaml"
    file.write_text(rule_text("good"))
    async with RuleWatcher(tmp_path, 60) as watcher:
        loaded = watcher.ruleset
        file.write_text("rules: [")
        assert not await watcher.reload_now()
        assert watcher.last_error is not None
        file.write_text(rule_text("good"))
        assert not await watcher.reload_now()  # valid again, but the same content: no change
        assert watcher.last_error is None
        assert watcher.ruleset is loaded


async def test_the_background_poll_reloads_without_being_asked(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(rule_text("before"))
    changed = asyncio.Event()
    async with RuleWatcher(tmp_path, 0.01, on_change=lambda _: changed.set()) as watcher:
        (tmp_path / "rules.yaml").write_text(rule_text("after-change"))
        await asyncio.wait_for(changed.wait(), timeout=10)
        assert ids(watcher) == ["after-change"]


async def test_invalid_rules_at_start_raise_and_are_reported(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("rules: [")
    watcher = RuleWatcher(tmp_path, 60)
    with pytest.raises(RuleError, match="invalid YAML"):
        await watcher.start()
    assert watcher.last_error is not None
    assert watcher.status().rules == []
    with pytest.raises(RuntimeError):
        _ = watcher.ruleset
    await watcher.aclose()


async def test_the_default_pack_needs_no_polling() -> None:
    async with RuleWatcher(None, 60) as watcher:
        status = watcher.status()
        assert status.version == watcher.ruleset.version
        assert "failed-login-burst" in {rule.id for rule in status.rules}
        assert not await watcher.poll()


SIGMA_EXEC = k8s_rule(
    "detection:\n  selection:\n    verb: create\n    objectRef.subresource: exec\n  condition: selection\n", serial=1
)
SIGMA_UNSUPPORTED = k8s_rule("detection:\n  selection:\n    kubeletVersion: v1\n  condition: selection\n", serial=2)


async def test_hot_reload_picks_up_a_sigma_file_and_logs_its_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "own.yaml").write_text(rule_text("own"), encoding="utf-8")
    async with RuleWatcher(tmp_path, 60) as watcher:
        assert [rule.id for rule in watcher.ruleset.rules] == ["own"]
        (tmp_path / "k8s.sigma.yml").write_text(SIGMA_EXEC + "---\n" + SIGMA_UNSUPPORTED, encoding="utf-8")
        with caplog.at_level(logging.WARNING, logger="auditflow.rules"):
            assert await watcher.poll()
        assert [rule.id for rule in watcher.ruleset.rules] == ["sigma-6f1e2d3c-0000-4000-8000-000000000001", "own"]
        assert watcher.status().warnings == list(watcher.ruleset.warnings)
        assert watcher.status().last_error is None
        assert any("kubeletVersion" in record.getMessage() for record in caplog.records)

        (tmp_path / "k8s.sigma.yml").write_text("title: [", encoding="utf-8")
        assert not await watcher.poll()  # broken Sigma keeps the rules that were active
        assert watcher.last_error is not None
        assert "k8s.sigma.yml" in watcher.last_error
        assert len(watcher.ruleset.rules) == 2
