"""Log output for every command: human text (default) or one JSON object a line.

JSON lines (``--log-format json``, or ``AGENTS_LOG_FORMAT=json`` for the worker)
carry ``time``, ``level``, ``logger`` and ``message`` plus any ``extra`` fields,
for log pipelines (Loki, Elasticsearch, Cloud Logging). Formatting is
python-json-logger's.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logging_config(log_format: LogFormat, level: int | str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``log_format`` on stderr at ``level``."""
    formatter: dict[str, Any] = {"format": TEXT_FORMAT}
    if log_format == "json":
        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
    level_name = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level_name, "handlers": ["stderr"]},
    }


def configure(log_format: LogFormat, level: int | str) -> None:
    """Set up the root logger for a command."""
    logging.config.dictConfig(logging_config(log_format, level))
