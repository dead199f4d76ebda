"""`auditflow` with the stand-in sshd parser registered, for tests that run the agent as a process."""

from __future__ import annotations

from auditflow.cli import main
from auditflow.sources import agent_command
from tests.sources import standin

agent_command.registry = standin.registry  # type: ignore[assignment]

if __name__ == "__main__":
    main()
