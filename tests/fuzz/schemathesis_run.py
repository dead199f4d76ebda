"""Run schemathesis, with all its checks, against a running AuditFlow API and sum up the result:
the in-suite fuzz tests use it with a few examples, and the long run with thousands.

    python -m tests.fuzz.schemathesis_run URL TOKEN [--examples N] [--seed S] [--workers W]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Checks the fuzzer cannot judge from a static document, each for a rule that depends on the time
# of the request or on earlier answers:
# * positive_data_acceptance: an event time is valid only within `event_max_future` of the time of
#   receipt, and a `cursor` only as a `next_cursor` of an earlier page; no schema can say either.
EXCLUDED_CHECKS = ("positive_data_acceptance",)
# Operations that change the process under test rather than answer a request: a fuzzed generator
# rate of a million events per second, or DEBUG logging, turns the run into a load test.
EXCLUDED_OPERATIONS = ("put_generator_api_v1_generator_put", "put_log_level_api_v1_admin_log_level_put")


@dataclass
class FuzzResult:
    exit_code: int
    cases: int
    server_errors: int
    output: str


def run(url: str, token: str, *, examples: int, seed: int, workers: int = 1, report: Path | None = None) -> FuzzResult:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url.rstrip('/')}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--exclude-checks",
        ",".join(EXCLUDED_CHECKS),
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--workers",
        str(workers),
        *(option for operation in EXCLUDED_OPERATIONS for option in ("--exclude-operation-id", operation)),
        "--continue-on-failure",
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-deterministic",  # which also keeps no example database
        "--request-timeout",
        "10",
        "--wait-for-schema",
        "30",
        "--no-color",
        "--output-truncate",
        "true",
    ]
    if report is not None:
        command += ["--report", "ndjson", "--report-ndjson-path", str(report)]
    # In a directory of its own: schemathesis keeps a cache of crashes in the working directory.
    with tempfile.TemporaryDirectory(prefix="auditflow-fuzz-") as workdir:
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=workdir)
    output = done.stdout + done.stderr
    generated = re.search(r"(\d+) generated", output)
    server_errors = len(re.findall(r"^\[5\d\d\]", output, re.MULTILINE))
    return FuzzResult(done.returncode, int(generated.group(1)) if generated else 0, server_errors, output)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--examples", type=int, default=800)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    result = run(args.url, args.token, examples=args.examples, seed=args.seed, workers=args.workers)
    print(result.output)
    print(f"cases: {result.cases}, 5xx answers: {result.server_errors}, exit code: {result.exit_code}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
