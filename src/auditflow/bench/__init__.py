"""`auditflow bench`: drive a workload with known answers through the pipeline (embedded or
distributed), measure throughput, latency and resources against baselines taken in the same run."""
