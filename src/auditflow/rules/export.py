"""`auditflow rules export --k8s`: rule files (Sigma files too) as Kubernetes AuditRule objects."""

from __future__ import annotations

import re
from pathlib import Path

import click
import yaml

from auditflow.rules.k8s import to_object
from auditflow.rules.loader import check_rules

_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _namespace(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if value and not _NAMESPACE.match(value):
        raise click.BadParameter("a namespace is a DNS-1123 label: lower-case letters, digits and '-', at most 63")
    return value


def _dump(document: object) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000)


@click.command("export")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--k8s", "k8s", is_flag=True, help="Write Kubernetes AuditRule objects (the only format so far).")
@click.option(
    "--out",
    default="-",
    show_default=True,
    help="A directory to write one <name>.yaml per object to, or - for one multi-document stream on stdout.",
)
@click.option(
    "--namespace",
    default="auditflow",
    show_default=True,
    callback=_namespace,
    help="The objects' namespace; an empty value leaves it out (kubectl apply -n then decides).",
)
def export_command(paths: tuple[Path, ...], k8s: bool, out: str, namespace: str) -> None:
    """Export the rules of rule files and directories (PATHS, Sigma files included, converted) as
    AuditRule objects: one per rule, named after the rule id, the rule as its spec.

    The rules are checked first, as `auditflow rules check` does: with any problem nothing is written
    and the command exits 1. Apply the objects with `kubectl apply -f` once the AuditRule
    CustomResourceDefinition is installed (deploy/k8s/components/auditrules); the loader reads the
    files back, and `kubectl get auditrules -o yaml` too.
    """
    if not k8s:
        raise click.UsageError("choose the output format: --k8s (AuditRule objects)")
    checked = check_rules(list(paths))
    for line in checked.problems + [f"warning: {warning}" for warning in checked.warnings]:
        click.echo(line, err=True)
    if checked.problems:
        raise SystemExit(1)
    objects = [to_object(rule, namespace or None) for rule in checked.rules]
    names = [obj["metadata"]["name"] for obj in objects]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        raise click.ClickException(f"rule ids that give the same object name: {', '.join(clashes)}")
    if out == "-":
        click.echo("---\n".join(_dump(obj) for obj in objects), nl=False)
        return
    directory = Path(out)
    if directory.exists() and not directory.is_dir():
        raise click.BadParameter(f"{directory} is not a directory", param_hint="--out")
    directory.mkdir(parents=True, exist_ok=True)
    for obj in objects:
        (directory / f"{obj['metadata']['name']}.yaml").write_text(_dump(obj), encoding="utf-8")
    click.echo(f"wrote {len(objects)} AuditRule objects to {directory}", err=True)
