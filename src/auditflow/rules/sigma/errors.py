"""Why a Sigma rule was not converted: unsupported by AuditFlow, or broken as Sigma."""

from __future__ import annotations


class UnsupportedRule(Exception):
    """A valid Sigma rule uses something AuditFlow cannot evaluate; the message is the reason."""


class BrokenRule(Exception):
    """A file is not a valid Sigma rule; the message says what is wrong."""
