"""The three error kinds every stage raises; only runners and agents decide what to do."""

from __future__ import annotations


class MentionError(Exception):
    """Base of every error this project raises on purpose."""

    kind: str = "error"


class RetryableError(MentionError):
    """A transient failure (network, 429, 5xx): try again later.

    Args:
        message: What failed.
        after: Seconds the remote side asked us to wait (Retry-After), if any.
    """

    kind = "retryable"

    def __init__(self, message: str, *, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class SkippableError(MentionError):
    """This one event cannot be processed (bad payload, failed validation).

    The event goes to the dead-letter topic with ``reason``; processing continues.

    Args:
        reason: Short, machine-friendly reason code, e.g. ``"decode"`` or ``"validation"``.
        message: Human-readable detail.
    """

    kind = "skippable"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class FatalError(MentionError):
    """Bad configuration or authentication: the process should stop with this message."""

    kind = "fatal"
