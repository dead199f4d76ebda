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
def import_sigma_command(paths: tuple[Path, ...], out_dir: Path | None) -> None:
    """Convert Sigma rules (files, or directories searched for *.yml and *.yaml) into AuditFlow rules.

    Every rule is reported: converted, unsupported (with the reason) or broken (with the error).
    Exits 1 when no rule could be converted.
    """
    try:
        from auditflow.rules.sigma.importer import import_sigma
        from auditflow.rules.sigma.writer import render_report, write_rules
    except ImportError as exc:
        raise click.ClickException(f"Sigma support needs pySigma: pip install 'auditflow[sigma]' ({exc})") from None
    report = import_sigma(list(paths))
    for line in render_report(report):
        click.echo(line)
    if out_dir is not None:
        written = write_rules(report, out_dir)
        click.echo(f"wrote {len(report.rules)} rules to {len(written)} files in {out_dir}")
    if not report.rules:
        raise SystemExit(1)
