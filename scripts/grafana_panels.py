"""Building blocks of AuditFlow's Grafana dashboards (scripts/dashboards.py): panels that all query the
Prometheus data source of the `datasource` variable, with units, legends and p50/p95/p99 helpers."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    GraphDrawStyle,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    ValueMap,
    ValueMappingResult,
    VariableRefresh,
    VariableSort,
)

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
QUANTILES = (0.5, 0.95, 0.99)
TAGS = ["auditflow"]

Query = tuple[str, str]  # (PromQL, legend)


def _targets(queries: list[Query]) -> list[prometheus.Dataquery]:
    return [
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
        for i, (expr, legend) in enumerate(queries)
    ]


def _legend() -> common.VizLegendOptions:
    """A table under the graph with each series' mean and peak, biggest first."""
    return (
        common.VizLegendOptions()
        .show_legend(True)
        .display_mode(LegendDisplayMode.TABLE)
        .placement(LegendPlacement.BOTTOM)
        .calcs(["mean", "max", "lastNotNull"])
        .sort_by("Max")
        .sort_desc(True)
    )


def graph(
    title: str, unit: str, queries: list[Query], description: str, *, span: int = 12, bars: bool = False
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_targets(queries))  # type: ignore[arg-type]
        .span(span)
        .height(8)
        .min(0)
        .fill_opacity(10)
        .legend(_legend())
        .tooltip(common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
    )
    return panel.draw_style(GraphDrawStyle.BARS) if bars else panel


def single(title: str, unit: str, query: Query, description: str, *, span: int = 6) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(_targets([query]))  # type: ignore[arg-type]
        .span(span)
        .height(4)
        .graph_mode(BigValueGraphMode.AREA)
    )


def up_down(title: str, query: Query, description: str, *, span: int = 12) -> statetimeline.Panel:
    mapping = ValueMap(
        {"0": ValueMappingResult(text="down", color="red"), "1": ValueMappingResult(text="up", color="green")}
    )
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets([query]))  # type: ignore[arg-type]
        .mappings([mapping])
        .fill_opacity(70)
        .line_width(0)
        .legend(common.VizLegendOptions().show_legend(False).display_mode(LegendDisplayMode.HIDDEN))
        .span(span)
        .height(8)
    )


def quantiles(metric: str, by: str = "", selector: str = "") -> list[Query]:
    """p50/p95/p99 of a histogram, summed over every series (or kept apart by `by`)."""
    group = f"le, {by}" if by else "le"
    legend = "{{" + by + "}} " if by else ""
    return [
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{selector}[{RATE}])))",
            f"{legend}p{round(q * 100)}",
        )
        for q in QUANTILES
    ]


def datasource_variable() -> dashboard.DatasourceVariable:
    return dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")


def query_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def new_dashboard(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .link(
            dashboard.DashboardLink("AuditFlow")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(TAGS)
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(True)
        )
        .with_variable(datasource_variable())
    )


def layout(board: dashboard.Dashboard, rows: list[tuple[str, list[object]]]) -> dashboard.Dashboard:
    """Rows of panels, numbered 1.. in reading order (Grafana needs ids unique within a dashboard)."""
    ident = 0
    for title, panels in rows:
        ident += 1
        board = board.with_row(dashboard.Row(title).id(ident))
        for panel in panels:
            ident += 1
            board = board.with_panel(panel.id(ident))  # type: ignore[attr-defined]
    return board
