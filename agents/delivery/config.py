"""The ``sinks`` settings block: registry name -> that sink's own settings model.

A block present means the sink is enabled. Each block is validated at
start-up by the settings model of the sink it names (``SINKS[name].settings_model``),
so a typo in a name or a missing token stops the worker with an error that
names the sink and the field, not a failure at the first delivery.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.delivery.policy import CircuitBreaker, RetryPolicy
from agents.sinks import SINKS


def validate_sinks(raw: Any) -> dict[str, BaseModel]:
    """Validate a ``sinks`` block into each sink's settings model.

    Args:
        raw: A mapping of sink name -> settings (a dict, or an already built
            settings model), or None for no sinks.

    Returns:
        Sink name -> its validated settings, in the given order.

    Raises:
        ValueError: The block is not a mapping, names an unknown sink, or a
            sink's settings are invalid (every field error is listed as
            ``sinks.<name>.<field>: <message>``).
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"sinks must be a mapping of sink name -> settings, not {type(raw)}")
    validated: dict[str, BaseModel] = {}
    problems: list[str] = []
    for name, block in raw.items():
        cls: Any = SINKS.get(str(name).lower())
        if cls is None:
            known = ", ".join(sorted(SINKS))
            problems.append(f"sinks.{name}: unknown sink (known: {known})")
            continue
        model: type[BaseModel] = cls.settings_model
        if isinstance(block, model):
            validated[cls.name] = block
            continue
        data = block.model_dump() if isinstance(block, BaseModel) else block
        try:
            validated[cls.name] = model.model_validate(data if data is not None else {})
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(part) for part in error["loc"])
                problems.append(f"sinks.{cls.name}.{where}: {error['msg']}")
    if problems:
        raise ValueError("invalid sink settings:\n  " + "\n  ".join(problems))
    return validated


class DeliverySettings(BaseModel):
    """How hard every sink is retried: the retry budget and the circuit breaker.

    The defaults ride out a 15-minute outage of a target; tests shorten them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    retry_base_s: float = Field(default=0.5, gt=0, description="Backoff before the 1st retry.")
    retry_cap_s: float = Field(default=60.0, gt=0, description="Longest backoff.")
    max_attempts: int = Field(default=12, ge=1, description="Calls per item before giving up.")
    max_elapsed_s: float = Field(
        default=900.0, gt=0, description="Longest time one item may spend in retries."
    )
    breaker_failures: int = Field(default=5, ge=1, description="Failures that open the breaker.")
    breaker_reset_s: float = Field(default=30.0, gt=0, description="Open time before a trial.")

    def policy(self) -> RetryPolicy:
        """The :class:`RetryPolicy` these settings describe."""
        return RetryPolicy(
            self.retry_base_s, self.retry_cap_s, self.max_attempts, self.max_elapsed_s
        )

    def breaker(self) -> CircuitBreaker:
        """A fresh :class:`CircuitBreaker` (one per sink)."""
        return CircuitBreaker(self.breaker_failures, self.breaker_reset_s)
