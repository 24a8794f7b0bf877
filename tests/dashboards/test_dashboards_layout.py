"""The first screen (1920x1080) answers "is the SLO burning, and which dependency is at
fault"; dashboards link to each other and the runbook, mark deploys, draw 5xx red, and show
the slowest routes rather than a line per route."""

from __future__ import annotations

from typing import Any

from dashboards.layout import FIRST_SCREEN_UNITS, RUNBOOK_URL
from tests.dashboards.panel_queries import dashboards, panels

OVERVIEW = "user-service-overview"
DEPENDENCIES = "user-service-dependencies"
FIRST_SCREEN = {
    OVERVIEW: {
        "Availability burn rate (1h)",
        "Latency burn rate (1h)",
        "Availability budget remaining (30d)",
        "Latency budget remaining (30d)",
        "Firing alerts (this service)",
        "Dependencies up (1 = up)",
        "Requests by status class",
        "Error ratio (5xx) by route",
        "Slowest routes: p95 (top 5)",
        "DB pool in use (worst pod)",
        "Redis breaker open (workers)",
        "Database errors",
    },
    DEPENDENCIES: {
        "Readiness checks by dependency (1 = up)",
        "Redis circuit breaker open (workers)",
        "Dependency errors (database, pool, Redis)",
        "Pool connections: checked out vs size and maximum",
    },
}


def _first_screen(model: dict[str, Any]) -> set[str]:
    """Panels wholly visible without scrolling (top-level, not in a collapsed row)."""
    return {
        p["title"]
        for p in model["panels"]
        if p.get("type") != "row" and p["gridPos"]["y"] + p["gridPos"]["h"] <= FIRST_SCREEN_UNITS
    }


def test_first_screen_holds_the_answers() -> None:
    models = dashboards()
    for uid, wanted in FIRST_SCREEN.items():
        shown = _first_screen(models[uid])
        assert wanted <= shown, f"{uid}: below the first screen: {sorted(wanted - shown)}"


def test_the_check_sees_a_panel_pushed_down() -> None:
    model = dashboards()[OVERVIEW]
    moved = {**model, "panels": [dict(p) for p in model["panels"]]}
    for panel in moved["panels"]:
        if panel.get("title") == "Firing alerts (this service)":
            panel["gridPos"] = {**panel["gridPos"], "y": FIRST_SCREEN_UNITS}
    assert "Firing alerts (this service)" not in _first_screen(moved)


def test_dashboards_link_each_other_and_the_runbook() -> None:
    for uid, model in dashboards().items():
        links = model.get("links", [])
        by_tag = [link for link in links if link["type"] == "dashboards"]
        assert by_tag and by_tag[0]["tags"] == ["user-service"], uid
        assert by_tag[0]["keepTime"] and by_tag[0]["includeVars"], uid
        assert "user-service" in model["tags"], f"{uid} is not reached by the tag link"
        assert any(link.get("url") == RUNBOOK_URL for link in links), uid


def test_deploys_are_annotated_from_build_info_changes() -> None:
    for uid, model in dashboards().items():
        (deploys,) = [a for a in model["annotations"]["list"] if a.get("name") == "Deploys"]
        assert deploys["enable"] is True, uid
        assert "user_service_build_info" in deploys["expr"] and "offset" in deploys["expr"]
        assert "{{version}}" in deploys["titleFormat"]


def test_5xx_is_red() -> None:
    (status,) = [
        p for p in panels(dashboards()[OVERVIEW]) if p["title"] == "Requests by status class"
    ]
    overrides = status["fieldConfig"]["overrides"]
    (five,) = [o for o in overrides if o["matcher"] == {"id": "byName", "options": "5xx"}]
    assert {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}} in five["properties"]


def test_latency_by_route_is_a_top_n_not_a_line_per_route() -> None:
    for model in dashboards().values():
        for panel in panels(model):
            for target in panel.get("targets", []):
                expr = target["expr"]
                if "histogram_quantile" in expr and "by (handler, le)" in expr:
                    assert expr.startswith("topk("), (panel["title"], expr)
