"""The dead-letter record: the original payload plus why and where it failed."""

from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from listener.errors import MentionError

MAX_RECORD_BYTES = 1_000_000
"""Largest record value the pipeline produces (Kafka's producer and broker limits are ~1 MiB).

A Mention bigger than this is dead-lettered with reason ``too_large``; a dead
letter bigger than this carries its payload cut to fit, with the original size.
"""


def dead_letter_record(
    payload: bytes | str | None,
    *,
    stage: str,
    reason: str,
    error: str,
    origin: dict[str, Any] | None = None,
) -> bytes:
    """Build the JSON value produced to ``mentions.dead-letter``.

    The original payload is kept whole (as text when it is UTF-8, otherwise
    base64) unless the record would pass :data:`MAX_RECORD_BYTES`: then the
    payload is cut to fit, ``payload_truncated`` is true and ``payload_bytes``
    records the original size, so the dead letter itself can always be written.

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
    raw = payload.encode("utf-8") if isinstance(payload, str) else payload
    value = orjson.dumps({**record, **_payload_fields(raw)})
    if len(value) <= MAX_RECORD_BYTES or raw is None:
        return value
    keep = len(raw)
    while len(value) > MAX_RECORD_BYTES:
        keep = int(keep * MAX_RECORD_BYTES / len(value) * 0.95)
        cut = {**_payload_fields(raw[:keep]), "payload_truncated": True, "payload_bytes": len(raw)}
        value = orjson.dumps({**record, **cut})
    return value


def _payload_fields(payload: bytes | None) -> dict[str, Any]:
    if payload is None:
        return {"payload": None}
    try:
        return {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError as exc:
        if exc.start >= len(payload) - 3 and exc.reason == "unexpected end of data":
            # Cut inside a character: drop its first bytes, keep the text.
            return {"payload": payload[: exc.start].decode("utf-8")}
        return {"payload_base64": base64.b64encode(payload).decode("ascii")}


def reason_of(exc: BaseException) -> str:
    """A bounded reason code for an exception (SkippableError's reason, else its kind)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason
    if isinstance(exc, MentionError):
        return exc.kind
    return "unexpected"
