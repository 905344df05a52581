"""The Helm chart's copies of the alert rules and dashboards (deploy/README.md, Helm)."""

from __future__ import annotations

import filecmp

from .tools import CHART, DEPLOY, GRAFANA_DASHBOARDS, RULES


def test_the_chart_copies_of_rules_and_dashboards_match_the_repository() -> None:
    """The chart can read only its own folder: ``make chart-files`` copies them in."""
    copy = CHART / "files" / "prometheus" / "rules.yml"
    assert filecmp.cmp(RULES, copy, shallow=False), f"{copy} differs: run `make chart-files`"
    dashboards = sorted(p.name for p in GRAFANA_DASHBOARDS.glob("*.json"))
    copies = CHART / "files" / "grafana" / "dashboards"
    assert dashboards and sorted(p.name for p in copies.iterdir()) == dashboards, (
        f"{copies} holds other files than {DEPLOY / 'grafana/dashboards'}: run `make chart-files`"
    )
    for name in dashboards:
        assert filecmp.cmp(GRAFANA_DASHBOARDS / name, copies / name, shallow=False), (
            f"{copies / name} differs: run `make chart-files`"
        )
