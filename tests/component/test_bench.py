"""`auditflow bench` as part of the suite: short runs that check correctness only (every expected
alert stored once, nothing lost, nothing extra), never timing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from auditflow.bench.options import NOISE_TYPES, BenchOptions, click_options
from auditflow.bench.pipeline import judge
from auditflow.bench.results import Correctness
from auditflow.bench.runner import run
from auditflow.bench.workload import DEFAULT_MIX, WorkloadSpec, build, parse_mix
from auditflow.cli import main
from auditflow.rules import load_rules
from tests.conftest import POSTGRES_ADMIN_URL, RABBITMQ_URL, REDIS_URL, require_server


def _quiet(_phase: str, _done: int, _total: int) -> None:
    return None


def test_workload_is_reproducible_and_knows_its_alerts() -> None:
    spec = WorkloadSpec(events=3000, batch_size=500, attack_share=0.1, seed=7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    first, second = build(spec, start), build(spec, start)
    assert first.bodies == second.bodies
    assert first.events == 3000
    assert first.expected
    assert first.expected.keys() == second.expected.keys()
    bursts = sum(body.count(b'"FAILURE"') for body in first.bodies)
    assert bursts == 3 * len(first.expected)


def test_judge_counts_lost_duplicated_and_unexpected() -> None:
    workload = build(WorkloadSpec(events=2000, batch_size=500, attack_share=0.1))
    expected = list(workload.expected.values())
    stored = [(e.alert_id, e.user_id, e.server_hostname) for e in expected[1:]]
    stored.append(("another-id", expected[1].user_id, expected[1].server_hostname))
    verdict = judge(workload, stored, other_rules=2)
    assert (verdict.lost, verdict.duplicated, verdict.unexpected, verdict.ok) == (1, 1, 2, False)


def test_mix_refuses_unknown_types() -> None:
    assert parse_mix("user_login=3,file_modified") == {"user_login": 3.0, "file_modified": 1.0}
    with pytest.raises(ValueError, match="rm_rf"):
        parse_mix("rm_rf=1")


async def test_embedded_pipeline_stores_every_expected_alert_once() -> None:
    options = BenchOptions(events=6000, batch_size=250, attack_share=0.05, naive_events=300, seed=3)
    result = await run(options, _quiet)
    assert result.pipeline is not None
    verdict = result.pipeline.correctness
    assert verdict.expected > 50
    assert verdict == Correctness(verdict.expected, verdict.expected, lost=0, duplicated=0, unexpected=0, ok=True)
    assert result.pipeline.baseline_naive is not None
    assert result.pipeline.baseline_naive.events == 300
    assert result.pipeline.baseline_raw_broker is not None
    assert result.pipeline.baseline_raw_broker.events == 6000


def test_the_command_line_is_derived_from_the_options() -> None:
    """Every option has a flag whose default is the dataclass default, and what the command line
    parses builds the options; the help names every event type the workload can generate."""
    import click

    @click.command()
    @click_options
    def probe(**params: object) -> None:
        options = BenchOptions.from_params(params)
        click.echo(repr(options == BenchOptions(scenarios=("persistence", "pipeline"), mix={"user_login": 2.0})))

    args = ["--scenario", "persistence", "--scenario", "pipeline", "--scenario", "persistence", "--mix", "user_login=2"]
    assert CliRunner().invoke(probe, args).output == "True\n"
    assert CliRunner().invoke(probe, ["--scenario", "all", "--keep"]).exit_code == 0
    bad = CliRunner().invoke(probe, ["--mix", "rm_rf=1"])
    assert bad.exit_code == 2
    assert "--mix" in bad.output
    assert "rm_rf" in bad.output
    assert set(NOISE_TYPES) == set(DEFAULT_MIX)
    help_text = CliRunner().invoke(main, ["bench", "--help"]).output
    for flag in ("--mode", "--scenario", "--duration", "--mix", "--baselines / --no-baselines", "--keep", "--json"):
        assert flag in help_text


def test_cli_scenarios_report_json() -> None:
    args = [
        "bench", "--json", "--scenario", "persistence", "--scenario", "api", "--scenario", "memory",
        "--persist-alerts", "300", "--naive-alerts", "20", "--seed-alerts", "2000", "--api-requests", "3",
        "--window-users", "500",
    ]  # fmt: skip
    outcome = CliRunner().invoke(main, args)
    assert outcome.exit_code == 0, outcome.output
    result = orjson.loads(outcome.stdout)
    assert result["persistence"]["stored"] == 300
    assert result["api"]["first_page"]["items"] == 50
    assert result["api"]["deep_page"]["items"] == 50  # 90 % deep: 200 alerts remain after the cursor
    assert result["memory"]["users"] == 500


async def test_distributed_pipeline_stores_every_expected_alert_once() -> None:
    for server in ("rabbitmq", "redis", "postgres"):
        require_server(server)
    options = BenchOptions(
        mode="distributed",
        events=4000,
        batch_size=250,
        attack_share=0.05,
        ingest="broker",
        baselines=False,
        broker_url=RABBITMQ_URL,
        state_url=REDIS_URL,
        database_url=POSTGRES_ADMIN_URL,
        seed=5,
    )
    result = await run(options, _quiet)
    assert result.pipeline is not None
    verdict = result.pipeline.correctness
    assert verdict.expected > 30
    assert verdict == Correctness(verdict.expected, verdict.expected, lost=0, duplicated=0, unexpected=0, ok=True)
    assert set(result.pipeline.processes) >= {"analysis", "notification"}
    # The capacity model's inputs: CPU per event for each service and for the servers it used.
    per_event = result.pipeline.cpu_us_per_event
    assert set(per_event) == set(result.pipeline.processes) >= {"analysis", "redis", "rabbitmq", "postgres"}
    assert (per_event["analysis"] or 0) > 0
    # A short run may cost a server less than one clock tick (10 ms): read, but possibly zero.
    assert all(per_event[name] is not None for name in ("redis", "rabbitmq", "postgres"))


def test_in_process_bodies_hand_over_their_validated_events() -> None:
    """The embedded hot path the bench measures: a body published in this process is decoded to
    the very events that were validated at intake, and the same bytes read by anyone else (a copy)
    parse to equal events."""
    from auditflow.backends.broker import LocalBody
    from auditflow.codec import decode_events, encode_events

    events = decode_events(build(WorkloadSpec(events=20, batch_size=20)).bodies[0]).items
    body = encode_events(events, local=True)
    assert isinstance(body, LocalBody)
    assert decode_events(bytes(bytearray(body))).items == events
    handed = decode_events(body, known=body.take_decoded()).items
    assert handed == events
    assert all(a is b for a, b in zip(handed, events, strict=True))
    assert body.take_decoded() is None  # taken once: a redelivery decodes the bytes


def test_ingest_scenario_parses_every_format_and_feeds_the_embedded_pipeline() -> None:
    """Correctness only: every sample is measured, the lines made the events the parser makes, all of
    them reached the pipeline, and the brute-force lines in the sshd sample raised alerts."""
    from auditflow.bench.loglines import SAMPLES
    from auditflow.parsers.registry import FORMATS

    outcome = CliRunner().invoke(main, ["bench", "--json", "--scenario", "ingest", "--log-lines", "600"])
    assert outcome.exit_code == 0, outcome.output
    samples = {s["sample"]: s for s in orjson.loads(outcome.stdout)["ingest"]["samples"]}
    assert samples.keys() == SAMPLES.keys()
    assert {s["format"] for s in samples.values()} == set(FORMATS)
    for name, sample in samples.items():
        assert sample["lines"] == 600, name
        assert sample["events"] > 300, name
        assert sample["end_to_end"]["events"] == sample["events"], name
        assert sample["parsed_lines_per_cpu_s"] > 0, name
        assert sample["baseline_lines_per_cpu_s"] > 0, name
    # every line is understood: the cron lines, which no parser reads, are generic syslog_message events
    assert all(not s["unparsed"] for s in samples.values())
    assert samples["sshd"]["end_to_end"]["alerts"] > 0


GATE_RULES = Path(__file__).parents[1] / "fixtures" / "gate-rules"


def test_rules_scenario_measures_the_pack_and_the_extra_rules_and_checks_their_alerts() -> None:
    """Correctness only: `--rules` alone runs the rules scenario; the shipped pack, the pack plus
    the directory's rules and the pack padded to --rules-count are each run with the rule gate and
    with every rule evaluated, and the alerts agree."""
    args = ["bench", "--json", "--rules", str(GATE_RULES), "--rule-lines", "80", "--rules-repeats", "1"]
    outcome = CliRunner().invoke(main, [*args, "--rules-count", "40"])
    assert outcome.exit_code == 0, outcome.output
    result = orjson.loads(outcome.stdout)
    assert "rules" in result
    assert "pipeline" not in result
    rules = result["rules"]
    pack, extra, padded = rules["sets"]
    assert [pack["rules"], padded["rules"] - pack["rules"]] == [17, 40]
    assert extra["rules"] - pack["rules"] == len(load_rules(GATE_RULES).rules)
    for measured in (pack, extra, padded):
        assert measured["pack_alerts_unchanged"] is True
        assert measured["same_alerts_as_every_rule"] is True
        assert measured["us_per_event"] > 0
        assert 0 < measured["gate_us_per_event"] + measured["conditions_us_per_event"] < measured["us_per_event"] * 3
        assert measured["pack_alerts"] == pack["pack_alerts"] > 0
    assert pack["extra_alerts"] == 0
    assert 0 < extra["extra_alerts"] < padded["extra_alerts"]  # the copies fire too, under their own ids
    assert rules["events"] > 300


def test_rules_scenario_converts_sigma_files_on_the_fly(tmp_path: Path) -> None:
    (tmp_path / "k8s.yml").write_text((GATE_RULES / "gate.sigma.yml").read_text(), encoding="utf-8")
    (tmp_path / "broken.yml").write_text("title: no detection\nlogsource: {product: linux}\n", encoding="utf-8")
    args = ["bench", "--json", "--sigma", str(tmp_path), "--rule-lines", "60", "--rules-repeats", "1"]
    outcome = CliRunner().invoke(main, [*args, "--no-every-rule"])
    assert outcome.exit_code == 0, outcome.output
    rules = orjson.loads(outcome.stdout)["rules"]
    assert rules["sources"] == [f"{tmp_path}: 2 Sigma rules converted, 1 not convertible"]
    assert rules["sets"][1]["rules"] == 17 + 2
    assert rules["sets"][1]["same_alerts_as_every_rule"] is None  # not run


def test_rules_scenario_names_the_broken_rule_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("rules:\n  - id: x\n    kind: match\n", encoding="utf-8")
    outcome = CliRunner().invoke(main, ["bench", "--rules", str(tmp_path)])
    assert outcome.exit_code == 1
    assert "bad.yaml" in outcome.output
    missing = CliRunner().invoke(main, ["bench", "--rules", str(tmp_path / "absent")])
    assert missing.exit_code == 2
    assert "absent" in missing.output


def test_padding_repeats_rules_or_varies_their_substrings() -> None:
    from auditflow.bench.rulecost import padded
    from auditflow.rules.schema import MatchRule

    rules = [r for r in load_rules(GATE_RULES).rules if r.id == "gate-session-not-sshd"]
    repeated, varied = padded(rules, 3), padded(rules, 3, vary=True)
    assert [r.id for r in varied] == [r.id for r in repeated] == [
        "gate-session-not-sshd", "gate-session-not-sshd-copy1", "gate-session-not-sshd-copy2",
    ]  # fmt: skip
    assert all(isinstance(r, MatchRule) for r in [*repeated, *varied])
    spec = [r.where.raw["details.event.original"] for r in varied if isinstance(r, MatchRule)]
    assert [s["contains"] for s in spec] == ["session opened", "session opened-1", "session opened-2"]
    assert all(s["ignore_case"] is True for s in spec)
    assert {r.where.raw["details.event.original"]["contains"] for r in repeated if isinstance(r, MatchRule)} == {
        "session opened"
    }


@pytest.mark.parametrize("mode", ["embedded", pytest.param("distributed", marks=pytest.mark.postgres)])
async def test_notify_scenario_delivers_every_outbox_row_exactly_once(mode: str) -> None:
    """Correctness only: every delivery the alerts wrote reached the receiver once, nothing else did,
    the outbox drained, and the baseline loop ran against the same receiver."""
    if mode == "distributed":
        require_server("postgres")
    options = BenchOptions(
        mode=mode,  # type: ignore[arg-type]
        scenarios=("notify",),
        notify_rate=150,
        duration=1,
        notify_channels=2,
        database_url=POSTGRES_ADMIN_URL,
    )
    result = await run(options, _quiet)
    notify = result.notify
    assert notify is not None
    assert notify.alerts == 150
    verdict = notify.correctness
    assert (verdict.expected, verdict.received, verdict.lost, verdict.duplicated, verdict.unexpected) == (
        300,
        300,
        0,
        0,
        0,
    )
    assert (verdict.missing_rows, verdict.dead, verdict.ok) == (0, 0, True)
    assert notify.outbox_depth.final == 0
    assert notify.outbox_depth.max >= notify.outbox_depth.min >= 0
    assert notify.latency_ms.samples == 300
    assert notify.store == ("sqlite" if mode == "embedded" else "postgresql")
    assert notify.baseline_requests == 300
    assert notify.baseline_requests_per_s
    assert notify.deliveries_per_cpu_second
    assert notify.baseline_requests_per_cpu_second
    assert notify.baseline_client == "aiohttp"
    assert notify.httpx_requests == 300
    assert notify.httpx_requests_per_s
    assert result.ratios.deliveries_vs_client_loop is not None
    assert result.ok


def test_notify_judge_counts_lost_repeated_and_unexpected_deliveries() -> None:
    from auditflow.bench.notify import judge

    rows = [("a", 1, "sent"), ("b", 1, "sent"), ("c", 1, "pending"), ("d", 1, "dead")]
    received = [("a", 1.0), ("a", 1.1), ("a", 1.2), ("b", 1.0), ("z", 1.0)]
    verdict = judge(rows, received, rows_due=5)
    assert (verdict.expected, verdict.received, verdict.lost, verdict.duplicated, verdict.unexpected) == (4, 3, 2, 2, 1)
    assert (verdict.missing_rows, verdict.dead, verdict.ok) == (1, 1, False)
    assert judge(rows[:2], received[2:4], rows_due=2).ok
