"""Supply-chain checks that run locally: bandit over src with only justified skips, a CycloneDX SBOM of the
project's own environment listing every pin of constraints.txt, and the `.trivyignore` format (reason and a
future expiry date on every entry). pip-audit and Trivy need advisory databases and run on GitHub only
(docs/operations/supply-chain.md)."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, run, tool

TRIVYIGNORE_ENTRY = re.compile(
    r"^(?P<id>(CVE-\d{4}-\d{4,}|GHSA(-[23456789cfghjmpqrvwx]{4}){3}|AVD-[A-Z]+-\d{4}|[A-Z]+-\d+))"
    r" exp:(?P<exp>\d{4}-\d{2}-\d{2})$"
)
REASON = re.compile(r"^# reason: (?P<text>.{20,})$")


def test_bandit_finds_nothing_with_only_justified_skips() -> None:
    bandit = tool("bandit")
    result = run([bandit, "-q", "-c", "pyproject.toml", "-r", "src", "-f", "json"], check=False)
    report = json.loads(result.stdout)
    findings = [(r["test_id"], r["filename"], r["line_number"]) for r in report["results"]]
    assert not findings, findings
    assert result.returncode == 0
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["bandit"]
    assert config["skips"] == ["B101"]
    # Each inline `nosec` names its test and has a reason: beside it (after the matching ruff noqa or its own
    # comment), or in the comment that opens the statement's block a few lines above.
    for path in (REPO / "src").rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            if "nosec" not in line:
                continue
            assert re.search(r"# nosec B\d{3}\b", line), f"{path}:{number}: nosec without a test id"
            beside = re.search(r"# noqa: S\d+ - \w|# nosec B\d{3}\s+# \w", line)
            above = any(re.match(r"\s*# \w", previous) for previous in lines[max(0, number - 10) : number - 1])
            assert beside or above, f"{path}:{number}: nosec without a reason"


def test_bandit_still_reports_without_the_nosec_marks(tmp_path: Path) -> None:
    """The marks hide real findings, so the clean result above comes from them and not from a blind scan."""
    bandit = tool("bandit")
    result = run([bandit, "-q", "-c", "pyproject.toml", "-r", "src", "--ignore-nosec", "-f", "json"], check=False)
    assert {r["test_id"] for r in json.loads(result.stdout)["results"]} >= {"B311", "B608"}


def pinned_constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


@pytest.fixture(scope="module")
def sbom(tmp_path_factory: pytest.TempPathFactory) -> dict:
    cyclonedx = tool("cyclonedx-py")
    output = tmp_path_factory.mktemp("sbom") / "environment.cdx.json"
    # `environment` reads the installed distributions of the interpreter running the suite; --validate checks
    # the document against the CycloneDX schema before it is written.
    run([cyclonedx, "environment", "--validate", "--of", "JSON", "--sv", "1.6", "-o", output, sys.executable])
    data: dict = json.loads(output.read_text(encoding="utf-8"))
    return data


def test_sbom_of_the_environment_lists_every_pinned_dependency(sbom: dict) -> None:
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["specVersion"] == "1.6"
    components = {re.sub(r"[-_.]+", "-", c["name"]).lower(): c for c in sbom["components"]}
    pins = pinned_constraints()
    assert len(pins) > 50
    missing = sorted(name for name in pins if name not in components)
    assert not missing, f"pinned in constraints.txt but not in the SBOM: {missing}"
    wrong = {n: (v, components[n]["version"]) for n, v in pins.items() if components[n]["version"] != v}
    assert not wrong, f"SBOM version differs from the pin: {wrong}"
    for name in pins:
        assert components[name]["purl"].startswith(f"pkg:pypi/{name}@"), components[name]["purl"]


def trivyignore_problems(text: str, today: date) -> list[str]:
    problems = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = TRIVYIGNORE_ENTRY.match(line)
        if not match:
            problems.append(f"line {number}: expected `ID exp:YYYY-MM-DD`, got {line!r}")
            continue
        reason = REASON.match(lines[number - 2]) if number > 1 else None
        if not reason:
            problems.append(f"line {number}: {match['id']} needs a `# reason: ...` line (20+ characters) above it")
        try:
            expires = date.fromisoformat(match["exp"])
        except ValueError:
            problems.append(f"line {number}: {match['exp']} is not a date")
            continue
        if expires <= today:
            problems.append(f"line {number}: {match['id']} expired on {expires}")
        elif expires > today + timedelta(days=366):
            problems.append(f"line {number}: {match['id']} expires more than a year ahead ({expires})")
    return problems


def test_trivyignore_entries_have_a_reason_and_a_future_expiry() -> None:
    path = REPO / ".trivyignore"
    assert trivyignore_problems(path.read_text(encoding="utf-8"), date.today()) == []


def test_trivyignore_check_rejects_bad_entries() -> None:
    today = date(2026, 6, 1)
    good = "# reason: the vulnerable function is never called by auditflow\nCVE-2026-1234 exp:2026-09-30\n"
    assert trivyignore_problems(good, today) == []
    assert trivyignore_problems(good, date(2026, 10, 1)) == ["line 2: CVE-2026-1234 expired on 2026-09-30"]
    no_reason = "CVE-2026-1234 exp:2026-09-30\n"
    assert "needs a `# reason" in trivyignore_problems(no_reason, today)[0]
    no_expiry = "# reason: the vulnerable function is never called by auditflow\nCVE-2026-1234\n"
    assert "expected `ID exp:YYYY-MM-DD`" in trivyignore_problems(no_expiry, today)[0]
    far = "# reason: the vulnerable function is never called by auditflow\nCVE-2026-1234 exp:2029-01-01\n"
    assert "more than a year" in trivyignore_problems(far, today)[0]
