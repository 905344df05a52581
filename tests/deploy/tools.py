"""Locating the external tools the deploy tests run (promtool, prometheus, helm, ...)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "tests" / "rules_test.yml"
CHART = DEPLOY / "helm" / "brand-listener"

INSTALL_HINTS = {
    "promtool": "apt-get install -y prometheus",
    "prometheus": "apt-get install -y prometheus",
}


def require(tool: str) -> str:
    """The path of ``tool`` on PATH; fails the test (never skips) when it is missing.

    Args:
        tool: Executable name.

    Returns:
        Its absolute path.

    Raises:
        AssertionError: ``tool`` is not installed; the message says how to install it.
    """
    path = shutil.which(tool)
    if path is None:
        hint = INSTALL_HINTS.get(tool, "see deploy/README.md")
        raise AssertionError(f"{tool} not found on PATH; install it with: {hint}")
    return path


GRAFANA_DASHBOARDS = DEPLOY / "grafana" / "dashboards"

RATE_INTERVAL = "1m"
"""What ``$__rate_interval`` stands for when a dashboard query is run outside Grafana."""

DASHBOARD_VARIABLES = {"$instance": ".*", "$team": ".*", "$brand": ".*"}
"""The dashboards' template variables as Grafana expands "All" (a regex matching any value)."""

_SELECTOR = re.compile(
    r"(?<![\w:])((?:[a-z_]*:)?brandlistener_[a-z_]+(?::[a-z0-9_]+)?|up)(\{[^}]*\})?(?![\w(:])"
)


def dashboard_queries(path: Path, raw: bool = False) -> list[tuple[str, str]]:
    """Every PromQL expression in a Grafana dashboard, with the panel title it belongs to.

    Panels nested in collapsed rows are included. ``$__rate_interval`` is replaced
    with :data:`RATE_INTERVAL` and the template variables with "All"
    (:data:`DASHBOARD_VARIABLES`); ``raw=True`` keeps them.

    Args:
        path: A dashboard JSON file.

    Returns:
        ``(panel title, expression)`` pairs in panel order.
    """
    found: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    expr = target["expr"]
                    if not raw:
                        expr = expr.replace("$__rate_interval", RATE_INTERVAL)
                        for name, value in DASHBOARD_VARIABLES.items():
                            expr = expr.replace(name, value)
                    found.append((panel.get("title", "?"), expr))
            walk(panel.get("panels", []))

    walk(json.loads(path.read_text())["panels"])
    return found


def rules(path: Path = RULES) -> list[dict[str, Any]]:
    """Every rule (recording and alerting) in a Prometheus rules file, in file order."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def selectors(expr: str) -> list[str]:
    """The instant-vector selectors of worker metrics (and ``up``) that ``expr`` reads.

    Args:
        expr: A PromQL expression.

    Returns:
        Selectors such as ``brandlistener_dead_letter_total`` or
        ``brandlistener_mentions_processed_total{stage="routed"}``, without range or offset.
    """
    return sorted({name + (labels or "") for name, labels in _SELECTOR.findall(expr)})
