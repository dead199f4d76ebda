"""A failover under load: analysis replicas apply a stream of batches through a Redis Cluster state
while one master is killed (kill -9) and its replica takes over. Used by the failover test, and
runnable on its own to measure what an unwaited failover loses:

    python -m tests.clusters.failover --wait-replicas 0
"""

from __future__ import annotations

import argparse
import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

from redis.asyncio.cluster import RedisCluster

from auditflow.backends.state.base import Hit, WindowOp
from auditflow.backends.state.cluster import RedisClusterWindowState, cluster_key
from auditflow.errors import BackendUnavailable
from tests.clusters.redis_cluster import RedisClusterProcesses
from tests.factories import op

__all__ = ["FailoverRun", "run_failover"]

NOW = 1_767_225_600_000
RULE = "t"


@dataclass
class FailoverRun:
    """What the replicas saw: the NEW hits, the batches applied and retried, and what the cluster
    still holds of the events whose batch was acknowledged."""

    batches: int = 0
    applied: int = 0
    retried: int = 0
    new_alerts: list[tuple[str, str]] = field(default_factory=list)  # (group, alert id)
    acknowledged: set[tuple[str, str]] = field(default_factory=set)  # (group, event id)
    lost_entries: int = 0
    groups_losing_entries: int = 0
    promoted_after_s: float = 0.0
    unreplicated_bytes: int = 0  # the replication backlog of the killed master just before the kill
    unreplicated_calls: int = 0  # calls whose WAIT timed out short of the replicas asked for, or went unwaited
    unreplicated_on_victim: int = 0  # of those, the calls to the killed master (before the kill, or failed)

    def duplicated_groups(self) -> list[str]:
        counts = Counter(group for group, _ in self.new_alerts)
        return sorted(group for group, n in counts.items() if n > 1)


def _batches(count: int, size: int, groups: int, seed: int) -> list[list[WindowOp]]:
    """Failed logins of `groups` users, in time order: a threshold of 3 in a minute, suppressed
    for an hour (longer than the run), so each user opens at most one alert; with a few events
    per user, alerts keep opening all through the run."""
    rng = random.Random(seed)
    out: list[list[WindowOp]] = []
    ts = NOW
    for b in range(count):
        batch = []
        for i in range(size):
            ts += rng.randrange(0, 3)
            group = f"user-{rng.randrange(groups)}"
            batch.append(
                op("threshold", f"b{b}e{i}", ts, rule=RULE, group=group, window=60_000, suppress=3_600_000, count=3)
            )
        out.append(batch)
    return out


async def run_failover(
    cluster: RedisClusterProcesses,
    *,
    wait_replicas: int,
    replicas: int = 3,
    batches: int = 240,
    batch_size: int = 50,
    groups: int = 3000,
    kill_after: int = 60,
    seed: int = 7,
) -> FailoverRun:
    """Apply `batches` through `replicas` competing consumers; after `kill_after` of them are
    applied, kill -9 the master of the slot the next batch's first group lives in, and go on."""
    run = FailoverRun(batches=batches)
    prefix = f"failover{random.getrandbits(32):x}:"
    url = cluster.url + (f"?wait_replicas={wait_replicas}&wait_timeout_ms=1000" if wait_replicas else "")
    queue: asyncio.Queue[list[WindowOp]] = asyncio.Queue()
    for batch in _batches(batches, batch_size, groups, seed):
        queue.put_nowait(batch)
    killed = asyncio.Event()
    states: list[RedisClusterWindowState] = []

    async def replica() -> None:
        async with RedisClusterWindowState(url, key_prefix=prefix) as state:
            states.append(state)
            while run.applied < run.batches:
                try:
                    batch = queue.get_nowait()
                except asyncio.QueueEmpty:  # the last batches are in flight, and may come back
                    await asyncio.sleep(0.05)
                    continue
                try:
                    hits: list[Hit] = await state.apply(batch)
                except BackendUnavailable:
                    run.retried += 1  # the broker redelivers it
                    queue.put_nowait(batch)
                    await asyncio.sleep(0.2)
                    continue
                run.applied += 1
                run.acknowledged.update((o.group_key, o.event_id) for o in batch)
                run.new_alerts += [(batch[h.op_index].group_key, h.alert_id) for h in hits if h.new]
                if run.applied == kill_after:
                    killed.set()
            run.unreplicated_calls += state.unreplicated_calls

    async def failover() -> int:
        await killed.wait()
        victim = cluster.master_ports()[0]
        replica_port = await asyncio.to_thread(cluster.replica_of, victim)
        info = await asyncio.to_thread(cluster.info, victim, "replication")
        offsets = [int(v.split("offset=")[1].split(",")[0]) for k, v in info.items() if k.startswith("slave")]
        run.unreplicated_bytes = int(info.get("master_repl_offset", 0)) - max(offsets, default=0)
        await asyncio.to_thread(cluster.kill, victim)
        run.promoted_after_s = await asyncio.to_thread(cluster.wait_promoted, replica_port)
        return victim

    victim, *_ = await asyncio.gather(failover(), *(replica() for _ in range(replicas)))
    # Counted at the end: a call to the dead master is one it took before the kill, or one that failed
    # (its batch was not acknowledged; counting it only loosens the bound the test applies).
    run.unreplicated_on_victim = sum(state.unreplicated_by_node[f"127.0.0.1:{victim}"] for state in states)
    assert all(name.startswith("127.0.0.1:") for state in states for name in state.unreplicated_by_node)
    await _count_lost(cluster, prefix, run)
    return run


async def _count_lost(cluster: RedisClusterProcesses, prefix: str, run: FailoverRun) -> None:
    """Acknowledged events that the windows no longer hold (none has slid out: the run is shorter
    than the window)."""
    alive = [port for port, process in cluster.processes.items() if process.poll() is None]
    client = RedisCluster(host="127.0.0.1", port=alive[0])
    try:
        by_group: dict[str, set[str]] = {}
        for group, event_id in run.acknowledged:
            by_group.setdefault(group, set()).add(event_id)
        for group, events in by_group.items():
            members = await client.zrange(f"{prefix}w:{cluster_key(RULE, group)}", 0, -1)
            held = {m.decode() if isinstance(m, bytes) else str(m) for m in members}
            missing = events - held
            run.lost_entries += len(missing)
            run.groups_losing_entries += bool(missing)
    finally:
        await client.aclose()


def main() -> None:  # pragma: no cover - a measurement, run by hand
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wait-replicas", type=int, default=0)
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    for n in range(options.runs):
        with RedisClusterProcesses(masters=3, node_timeout_ms=1000) as cluster:
            run = asyncio.run(run_failover(cluster, wait_replicas=options.wait_replicas, seed=n))
        print(
            f"wait_replicas={options.wait_replicas} run {n}: {run.applied}/{run.batches} batches applied, "
            f"{run.retried} redelivered, promoted after {run.promoted_after_s:.1f} s, "
            f"{len(run.new_alerts)} new alerts, {len(run.duplicated_groups())} groups alerted twice, "
            f"{run.lost_entries} acknowledged entries lost in {run.groups_losing_entries} groups, "
            f"{run.unreplicated_calls} calls short of replicas ({run.unreplicated_on_victim} to the killed master "
            f"before the kill), {run.unreplicated_bytes} bytes unreplicated at the kill"
        )


if __name__ == "__main__":  # pragma: no cover
    main()
