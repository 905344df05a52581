"""The alert and recording rules: ``promtool check rules`` and ``promtool test rules``."""

from __future__ import annotations

import subprocess

import yaml

from .tools import RULES, RULES_TEST, require


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_rules_pass_promtool_check() -> None:
    result = run(require("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, f"promtool check rules failed:\n{result.stdout}{result.stderr}"


def test_rules_pass_their_promtool_unit_tests() -> None:
    # promtool resolves rule_files relative to the test file.
    result = run(require("promtool"), "test", "rules", str(RULES_TEST))
    assert result.returncode == 0, f"promtool test rules failed:\n{result.stdout}{result.stderr}"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    cases = yaml.safe_load(RULES_TEST.read_text())["tests"]
    firing, quiet = set(), set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alerts - firing == set(), f"alerts with no firing case: {sorted(alerts - firing)}"
    assert alerts - quiet == set(), f"alerts with no not-firing case: {sorted(alerts - quiet)}"


def test_every_alert_has_severity_and_summary() -> None:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule.get("labels", {}).get("severity") in {"warning", "critical"}, rule
                assert rule.get("annotations", {}).get("summary"), rule["alert"]


def test_every_alert_links_its_runbook_section() -> None:
    """Each ``runbook_url`` names a ``### <AlertName>`` section of deploy/README.md."""
    rules = yaml.safe_load(RULES.read_text())
    headings = {
        line[4:].strip().lower()
        for line in (RULES.parents[1] / "README.md").read_text().splitlines()
        if line.startswith("### ")
    }
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            url = rule["annotations"].get("runbook_url", "")
            assert url == f"deploy/README.md#{rule['alert'].lower()}", rule["alert"]
            assert rule["alert"].lower() in headings, f"no runbook section for {rule['alert']}"
