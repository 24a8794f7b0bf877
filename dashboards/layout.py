"""A 24-column grid that places panels left to right, row by row, and numbers them.

Grafana needs explicit gridPos and unique ids; computing them here keeps dashboard modules a
plain list of rows and panels, and keeps the generated JSON stable between builds.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.common import DataSourceRef
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    GridPos,
)

from dashboards import variables

GRID_WIDTH = 24
# What a 1920x1080 screen shows without scrolling: about 930 px below the browser bar and
# Grafana's header and variables, at 30 px per grid unit plus an 8 px gap: 24 units.
FIRST_SCREEN_UNITS = 24
RUNBOOK_URL = "https://github.com/example/user-service/blob/main/dashboards/RUNBOOK.md"


class Board:
    """Wraps a dashboard builder; `row()` starts a section, `add()` appends a panel."""

    def __init__(self, builder: dashboard.Dashboard) -> None:
        self.builder = builder
        self._next_id = 1
        self._x = 0
        self._y = 0
        self._row_height = 0

    def _take_id(self) -> int:
        panel_id = self._next_id
        self._next_id += 1
        return panel_id

    def _newline(self) -> None:
        self._y += self._row_height
        self._x = 0
        self._row_height = 0

    def row(self, title: str) -> Board:
        if self._x:
            self._newline()
        row = (
            dashboard.Row(title)
            .id(self._take_id())
            .grid_pos(GridPos(h=1, w=GRID_WIDTH, x=0, y=self._y))
        )
        self.builder = self.builder.with_row(row)
        self._y += 1
        return self

    def add(self, panel: Any, width: int = 8, height: int = 8) -> Board:
        """Append `panel` (any SDK panel builder); wraps to a new line when it does not fit."""
        if self._x + width > GRID_WIDTH:
            self._newline()
        panel = panel.id(self._take_id()).grid_pos(GridPos(h=height, w=width, x=self._x, y=self._y))
        self.builder = self.builder.with_panel(panel)
        self._x += width
        self._row_height = max(self._row_height, height)
        return self


DEPLOYED = f'{variables.BUILD_INFO}{{job=~"$job", namespace=~"$namespace"}}'


def new_dashboard(title: str, uid: str, description: str, tags: list[str]) -> dashboard.Dashboard:
    """The settings every dashboard of the service shares: time range, refresh, UTC, a shared
    crosshair, and the datasource, job, namespace and pod variables."""
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(tags)
        .time("now-3h", "now")
        .refresh("30s")
        .timezone("utc")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(variables.datasource())
        .with_variable(variables.job())
        .with_variable(variables.namespace())
        .with_variable(variables.service())
        .with_variable(variables.pod())
        # Every dashboard tagged user-service (overview, dependencies, authentication, and
        # any added later), keeping the time range and variables, and the runbook.
        .link(
            dashboard.DashboardLink("user-service dashboards")
            .type(DashboardLinkType.DASHBOARDS)
            .tags(["user-service"])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
        .link(
            dashboard.DashboardLink("Runbook")
            .type(DashboardLinkType.LINK)
            .url(RUNBOOK_URL)
            .icon("doc")
            .tooltip("One section per alert: what it means, what to check, what to do")
            .target_blank(True)
        )
        # A deploy: a version or commit reported now that was not five minutes earlier.
        .annotation(
            dashboard.AnnotationQuery()
            .name("Deploys")
            .datasource(DataSourceRef(type_val="prometheus", uid="${datasource}"))
            .enable(True)
            .icon_color("blue")
            .expr(
                f"count by (version, git_commit) ({DEPLOYED}) unless "
                f"count by (version, git_commit) ({DEPLOYED} offset 5m)"
            )
            .title_format("deploy {{version}}")
            .text_format("commit {{git_commit}}")
            .step("1m")
        )
    )
