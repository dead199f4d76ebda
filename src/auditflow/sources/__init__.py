"""Log sources: `auditflow ingest` (one-shot files or stdin), `auditflow agent` (a file follower
with checkpoints) and the syslog receiver of `auditflow serve syslog`, all turning lines into events
with the parsers and submitting them in batches."""
