"""Locating the external tools the deploy tests run (promtool, prometheus, helm, ...)."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
RULES_TEST = DEPLOY / "prometheus" / "tests" / "rules_test.yml"

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
