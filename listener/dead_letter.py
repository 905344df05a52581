"""The dead-letter record: the original payload plus why and where it failed."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from listener.errors import MentionError


def dead_letter_record(
    payload: bytes | str | None,
    *,
    stage: str,
    reason: str,
    error: str,
    origin: dict[str, Any] | None = None,
) -> bytes:
    """Build the JSON value produced to ``mentions.dead-letter``.

    The original payload is kept whole so nothing is lost: as text when it is
    UTF-8, otherwise base64.

    Args:
        payload: The bytes (or text) that failed.
        stage: Where it failed: ``replay``, ``classify``, ``route``, a sink name, ...
        reason: Short bounded reason code (used as a metric label).
        error: Human-readable detail.
        origin: Where the payload came from (topic/partition/offset, file and line).
    """
    record: dict[str, Any] = {
        "stage": stage,
        "reason": reason,
        "error": error,
        "failed_at": time.time(),
        "origin": origin or {},
    }
    if isinstance(payload, bytes):
        try:
            record["payload"] = payload.decode("utf-8")
        except UnicodeDecodeError:
            record["payload_base64"] = base64.b64encode(payload).decode("ascii")
    else:
        record["payload"] = payload
    return orjson.dumps(record)


def reason_of(exc: BaseException) -> str:
    """A bounded reason code for an exception (SkippableError's reason, else its kind)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason
    if isinstance(exc, MentionError):
        return exc.kind
    return "unexpected"
