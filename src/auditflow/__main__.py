"""`python -m auditflow` is the `auditflow` command."""

from __future__ import annotations

from auditflow.cli import main

main()
