"""Log output as text or JSON lines (listener/logs.py)."""

from __future__ import annotations

import io
import logging
import logging.config

import orjson

from listener.logs import logging_config


def emit(log_format: str) -> str:
    config = logging_config(log_format, "INFO")  # type: ignore[arg-type]
    stream = io.StringIO()
    config["handlers"]["stderr"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        logging.getLogger("agents.test").warning(
            "queued %s", '<script>"x"</script>', extra={"stage": "route"}
        )
    finally:
        logging.config.dictConfig(logging_config("text", "WARNING"))
    return stream.getvalue()


def test_json_lines_carry_time_level_logger_message_and_extras() -> None:
    line = orjson.loads(emit("json").strip())
    assert line["level"] == "WARNING" and line["logger"] == "agents.test"
    assert line["message"] == 'queued <script>"x"</script>' and line["stage"] == "route"
    assert "time" in line


def test_text_lines_stay_human() -> None:
    assert emit("text").rstrip().endswith('WARNING agents.test: queued <script>"x"</script>')
