"""`auditflow rules import-sigma`: convert Sigma rule files into AuditFlow rule files."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("import-sigma")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory to write the converted rules to; without it only the report is printed.",
)
@click.option(
    "--pipeline",
    "pipelines",
    multiple=True,
    metavar="NAME",
    help="A pySigma processing pipeline applied to every rule before AuditFlow's own mapping: a pipeline "
    "YAML file (field renames, logsource changes, ...) or the name of an installed pySigma pipeline. "
    "'auditflow', the built-in mapping, always applies last and is the default. May be repeated.",
)
def import_sigma_command(paths: tuple[Path, ...], out_dir: Path | None, pipelines: tuple[str, ...]) -> None:
    """Convert Sigma rules (files, or directories searched for *.yml and *.yaml) into AuditFlow rules.

    Every rule is reported: converted, unsupported (with the reason) or broken (with the error).
    A Sigma file may name pipelines for its own rules in a leading comment line
    `# auditflow-sigma-pipeline: FILE`. Exits 1 when no rule could be converted.
    """
    try:
        from auditflow.rules.sigma.importer import import_sigma
        from auditflow.rules.sigma.pipelines import PipelineError, load
        from auditflow.rules.sigma.writer import render_report, write_rules
    except ImportError as exc:
        raise click.ClickException(f"Sigma support needs pySigma: pip install 'auditflow[sigma]' ({exc})") from None
    try:
        processing = load(pipelines)
    except PipelineError as exc:
        raise click.BadParameter(str(exc), param_hint="'--pipeline'") from None
    report = import_sigma(list(paths), processing)
    for line in render_report(report):
        click.echo(line)
    if out_dir is not None:
        written = write_rules(report, out_dir)
        click.echo(f"wrote {len(report.rules)} rules to {len(written)} files in {out_dir}")
    if not report.rules:
        raise SystemExit(1)
