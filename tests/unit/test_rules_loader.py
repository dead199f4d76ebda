"""Rule loading: files and directories, every problem reported at once with file, rule and field."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from auditflow.errors import RuleError
from auditflow.rules import check_files, load_rules
from auditflow.rules.loader import DEFAULT_RULES_DIR

GOOD = """
rules:
  - id: failed-login-burst
    name: Failed logins
    kind: threshold
    severity: ERROR
    where: {event_type: user_login, action_result: FAILURE}
    count: 3
    window: 60s
    group_by: [user_id, server_hostname]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_a_file_with_rules_key_and_a_top_level_list_both_load(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", GOOD)
    write(
        tmp_path / "b.yml",
        """
        - id: shadow
          name: Shadow
          kind: match
          severity: CRITICAL
          where: {details.resource: /etc/shadow}
        """,
    )
    ruleset = load_rules(tmp_path)
    assert [rule.id for rule in ruleset.rules] == ["failed-login-burst", "shadow"]
    assert ruleset.by_id["shadow"].kind == "match"
    assert ruleset.sources["shadow"] == str(tmp_path / "b.yml")
    assert ruleset.source == str(tmp_path)
    assert len(ruleset.version) == 16
    assert load_rules(tmp_path / "a.yaml").version != ruleset.version


def test_the_version_is_a_content_hash(tmp_path: Path) -> None:
    file = write(tmp_path / "a.yaml", GOOD)
    first = load_rules(tmp_path).version
    assert load_rules(tmp_path).version == first
    file.write_text(GOOD.replace("count: 3", "count: 4"))
    assert load_rules(tmp_path).version != first


def test_schema_error_names_file_rule_and_field(tmp_path: Path) -> None:
    file = write(tmp_path / "auth.yaml", GOOD.replace("window: 60s", "window: abc"))
    with pytest.raises(RuleError) as info:
        load_rules(tmp_path)
    assert str(info.value) == (
        f"{file}: rule 'failed-login-burst': window: invalid duration 'abc': use e.g. 60s, 5m, 1h or integer seconds"
    )


def test_all_problems_of_all_files_are_collected_one_per_line(tmp_path: Path) -> None:
    write(
        tmp_path / "a.yaml",
        """
        rules:
          - id: one
            name: One
            kind: threshold
            severity: LOUD
            where: {details.cmd: {regex: "("}}
            window: 1m
            extra: 1
          - name: no id
            kind: banana
          - just a string
        """,
    )
    write(tmp_path / "b.yaml", "rules: [\n  {id: x,\n")
    problems = check_files([tmp_path])
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert f"{a}: rule 'one': severity: Input should be 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'" in problems
    assert f"{a}: rule 'one': count: required" in problems
    assert f"{a}: rule 'one': extra: unknown key" in problems
    assert any(p.startswith(f"{a}: rule 'one': where: details.cmd.regex: invalid regular expression") for p in problems)
    assert f"{a}: rule #2: kind: expected one of match, threshold, sequence, got 'banana'" in problems
    assert f"{a}: rule #3: expected a mapping, got str" in problems
    assert any(p.startswith(f"{b}: line 3, column 1: invalid YAML") for p in problems), problems
    with pytest.raises(RuleError) as info:
        load_rules(tmp_path)
    assert str(info.value).splitlines() == problems


def test_duplicate_ids_across_files_and_duplicate_yaml_keys(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", GOOD)
    write(tmp_path / "b.yaml", GOOD)
    write(tmp_path / "c.yaml", "rules: []\nrules: []\n")
    problems = check_files([tmp_path])
    assert problems[0] == (
        f"{tmp_path / 'b.yaml'}: rule 'failed-login-burst': id: duplicate, already defined in {tmp_path / 'a.yaml'}"
    )
    assert problems[1].startswith(f"{tmp_path / 'c.yaml'}: line 2, column 1: invalid YAML: duplicate key 'rules'")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "expected `rules: [...]` or a list of rules"),
        ("rules: {a: 1}", "rules: expected a list of rules"),
        ("rules: []\nversion: 2", "unknown top-level key(s) version: a file holds `rules: [...]`"),
        ("42", "expected `rules: [...]` or a list of rules"),
    ],
)
def test_bad_file_shapes(tmp_path: Path, text: str, problem: str) -> None:
    file = write(tmp_path / "x.yaml", text)
    assert check_files([file]) == [f"{file}: {problem}"]


def test_check_files_reports_missing_paths_empty_dirs_and_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe")
    problems = check_files([tmp_path / "nope.yaml", tmp_path / "empty", binary])
    assert problems[0] == f"{tmp_path / 'nope.yaml'}: no such file or directory"
    assert problems[1] == f"{tmp_path / 'empty'}: no rule files (*.yaml, *.yml) in this directory"
    assert problems[2].startswith(f"{binary}: cannot read:")
    assert check_files([write(tmp_path / "ok.yaml", GOOD)]) == []


def test_directories_skip_dotfiles_and_follow_configmap_symlinks(tmp_path: Path) -> None:
    # The layout a Kubernetes ConfigMap volume has: files are symlinks through `..data`.
    real = tmp_path / "..2026_01_01_00_00_00.1"
    write(real / "auth.yaml", GOOD)
    write(real / "notes.txt", "not a rule file")
    os.symlink(real.name, tmp_path / "..data")
    os.symlink("..data/auth.yaml", tmp_path / "auth.yaml")
    write(tmp_path / ".hidden.yaml", "broken: [")
    ruleset = load_rules(tmp_path)
    assert [rule.id for rule in ruleset.rules] == ["failed-login-burst"]


def test_none_loads_the_shipped_pack() -> None:
    ruleset = load_rules(None)
    assert ruleset.source == str(DEFAULT_RULES_DIR)
    assert "failed-login-burst" in ruleset.by_id
    assert check_files([DEFAULT_RULES_DIR]) == []


def test_the_index_skips_rules_pinned_to_other_event_types(tmp_path: Path) -> None:
    write(
        tmp_path / "r.yaml",
        """
        rules:
          - {id: login, name: L, kind: match, severity: INFO, where: {event_type: user_login}}
          - {id: any, name: A, kind: match, severity: INFO, where: {user_id: root}}
          - {id: disabled, name: O, kind: match, severity: INFO, enabled: false, where: {event_type: user_login}}
        """,
    )
    ruleset = load_rules(tmp_path)
    assert [rule.id for rule in ruleset.for_event_type("user_login")] == ["login", "any"]
    assert [rule.id for rule in ruleset.for_event_type("file_modified")] == ["any"]
    assert [info.id for info in ruleset.infos()] == ["login", "any", "disabled"]
    assert ruleset.infos()[0].window_seconds is None


DOCS = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def test_the_rule_examples_in_the_reference_are_valid(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 5
    problems: list[str] = []
    for index, block in enumerate(blocks):
        if not block.startswith(("rules:", "- ")):  # a fragment of one rule: complete it
            head = "- id: example\n  name: Example\n  kind: match\n  severity: INFO\n"
            tail = "" if block.startswith("where:") else "  where: {user_id: x}\n"
            block = head + textwrap.indent(block, "  ") + tail
        problems += check_files([write(tmp_path / f"example{index}.yaml", block)])
    assert problems == []


METADATA = """
rules:
  - id: root-login
    name: Root logged in
    kind: match
    severity: WARNING
    where: {event_type: user_login, user_id: root}
    tags: [attack.t1078.003]
    references: [https://attack.mitre.org/techniques/T1078/003/]
    falsepositives: [Break-glass logins by the on-call engineer]
    origin: {kind: sigma, id: 6f1e2d3c-0000-4000-8000-000000000009, level: medium, status: stable}
"""


def test_metadata_keys_load_and_reach_the_rule_info(tmp_path: Path) -> None:
    ruleset = load_rules(write(tmp_path / "meta.yaml", METADATA))
    info = ruleset.info("root-login")
    assert info is not None
    assert info.references == ["https://attack.mitre.org/techniques/T1078/003/"]
    assert info.falsepositives == ["Break-glass logins by the on-call engineer"]
    assert info.origin is not None
    assert (info.origin.kind, info.origin.level, info.origin.status) == ("sigma", "medium", "stable")
    assert ruleset.info("no-such-rule") is None


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            ("https://attack.mitre.org/techniques/T1078/003/", "javascript:alert(1)"),
            "references.0: expected an http:// or https:// URL with a host and no whitespace",
        ),
        (("https://attack.mitre.org/techniques/T1078/003/", "ftp://example.invalid/x"), "references.0: expected"),
        (("[Break-glass logins by the on-call engineer]", "['']"), "falsepositives.0: String should have at least"),
        (("kind: sigma,", "kind: elastic,"), "origin.kind: Input should be 'sigma'"),
        (("level: medium", "level: severe"), "origin.level: Input should be 'informational', 'low'"),
        (("status: stable}", "status: stable, author: x}"), "origin.author: unknown key"),
    ],
)
def test_bad_metadata_is_a_problem_naming_the_field(tmp_path: Path, change: tuple[str, str], problem: str) -> None:
    file = write(tmp_path / "meta.yaml", METADATA.replace(*change))
    [found] = check_files([file])
    assert found.startswith(f"{file}: rule 'root-login': {problem}"), found
