"""Clients of a running AuditFlow instance, used by the command line (`auditflow send`)."""
