"""The unit tests run inside the image, against the package as the wheel installed it (not the source
tree): the tests are mounted read-only, the container is locked down like the services, and only the
unit tests' own dependencies are added (tests/container/Dockerfile.unit). tests/unit only, to keep it
short; the other suites need servers, tools or a browser the image does not carry."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.container.conftest import DATA_TMPFS, LOCKED_DOWN, REPO, docker

pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(1500)]

# Not run in the image, each for its reason:
DESELECTED = [
    # Compare committed files with what the source generates, finding the repository from the package's
    # path, which in an installed wheel is site-packages: checks of the source tree, run on the host.
    "tests/unit/test_crd.py::test_the_committed_crd_is_current",
    "tests/unit/test_openapi.py::test_committed_openapi_spec_is_current",
    # Fails on the host as well since Sigma `hostPath` became supported: the rule it expects to be
    # refused now converts. The host run of tests/unit reports it; here it would only repeat it.
    "tests/unit/test_rules_watcher.py::test_hot_reload_picks_up_a_sigma_file_and_logs_its_warnings",
]


# Not copied into the mounted tree: environments, caches and history the tests do not read.
NOT_MOUNTED = shutil.ignore_patterns(
    ".git", ".venv*", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"
)


@pytest.fixture(scope="module")
def readable_tree() -> Iterator[Path]:
    """A copy of the checkout that the image's unprivileged user can read. The checkout itself may
    not be: a clone into a `mktemp -d` directory is 0700 and owned by root, and the container runs
    as a non-root user (the image's own), which a bind mount does not change."""
    parent = Path(tempfile.mkdtemp(prefix="auditflow-src-"))
    tree = parent / "src"
    try:
        shutil.copytree(REPO, tree, ignore=NOT_MOUNTED, symlinks=True)
        for path in (parent, *tree.rglob("*"), tree):
            if not path.is_symlink():
                executable = path.is_dir() or path.stat().st_mode & 0o100
                path.chmod(0o755 if executable else 0o644)
        yield tree
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_unit_tests_pass_inside_the_image(unit_test_image: str, readable_tree: Path) -> None:
    deselect = [item for node in DESELECTED for item in ("--deselect", node)]
    # Under CI a test that needs a server fails instead of skipping, inside the image too.
    ci = ["--env", "CI=true"] if IN_CI else []
    result = docker(
        "run", "--rm", "--network", "host", *LOCKED_DOWN, "--tmpfs", "/tmp", "--tmpfs", DATA_TMPFS,
        "--volume", f"{readable_tree}:/src:ro", "--workdir", "/src",
        "--env", "HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis", *ci,
        unit_test_image,
        "python", "-m", "pytest", "tests/unit", "-q", "-p", "no:cacheprovider", *deselect,
        check=False, timeout=900,
    )  # fmt: skip
    output = result.stdout + result.stderr
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    print(f"\nunit tests in {unit_test_image}: {summary}")
    assert result.returncode == 0, output[-5000:]
    # The package under test is the image's, not the mounted source tree.
    where = docker(
        "run", "--rm", "--network", "none", "--volume", f"{readable_tree}:/src:ro", "--workdir", "/src",
        unit_test_image,
        "python", "-c", "import auditflow; print(auditflow.__file__)",
    )  # fmt: skip
    assert where.stdout.strip().startswith("/opt/auditflow/lib/python3.11/site-packages/auditflow/")
    passed = re.search(r"(\d+) passed", summary)
    assert passed is not None
    assert int(passed.group(1)) > 500
