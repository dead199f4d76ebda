"""Log sources: `auditflow ingest` (one-shot files or stdin) and `auditflow agent` (a file follower
with checkpoints), both turning lines into events with the parsers and submitting them in batches."""
