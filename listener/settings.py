"""The listener process's settings root: read once from the environment, passed down.

Environment variables use the prefix ``LISTENER_`` and ``__`` as the nested
delimiter; the Kafka block also reads its own flat prefix ``LISTENER_KAFKA_``::

    LISTENER_KAFKA__BOOTSTRAP_SERVERS=broker:9092    # nested form, via ListenerSettings
    LISTENER_KAFKA_BOOTSTRAP_SERVERS=broker:9092     # flat form, via KafkaSettings

When both forms are set, the nested one wins.

Nothing here is a module-level global: a command builds ``ListenerSettings()``
once, applies its flags with :meth:`KafkaSettings.override`, and hands the
result to whatever needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from listener.brands import BrandSettings
from listener.topics import TopicNames


class FlagSettings(BaseSettings):
    """Settings whose command-line flags win over the environment (see :meth:`override`)."""

    def override(self, **changes: object) -> Self:
        """A validated copy with ``changes`` applied; ``None`` values are ignored.

        Used for command-line flags, which win over the environment.

        Raises:
            pydantic.ValidationError: A change is not a valid value for its field.
        """
        updates = {k: v for k, v in changes.items() if v is not None}
        return type(self).model_validate({**self.model_dump(), **updates})


class KafkaSettings(FlagSettings):
    """How to reach the Kafka cluster, and the topic-name prefix of this deployment.

    Security settings (SASL/TLS) are not supported yet: a plaintext listener is assumed.
    """

    model_config = SettingsConfigDict(env_prefix="LISTENER_KAFKA_", frozen=True, extra="ignore")

    bootstrap_servers: str = Field(
        default="127.0.0.1:9092",
        min_length=1,
        description="Comma-separated host:port list of bootstrap brokers.",
    )
    topic_prefix: str = Field(default="", description="Prepended to every topic name.")
    client_id: str = Field(default="brand-listener", min_length=1)
    bootstrap_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="How long to wait for the first broker connection before giving up.",
    )
    delivery_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Upper bound on reporting success or failure of one send, retries included.",
    )

    @property
    def topics(self) -> TopicNames:
        """The topic names under this deployment's prefix."""
        return TopicNames(prefix=self.topic_prefix)

    def bootstrap_list(self) -> list[str]:
        """``bootstrap_servers`` split on commas, blanks dropped."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]


class ListenSettings(BaseModel):
    """How ``brand-listener listen`` runs its connectors (see :mod:`listener.runner`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cursor_dir: Path = Field(
        default=Path(".brand-listener/cursors"),
        description="One JSON cursor file per connector; keep it on a persistent volume.",
    )
    metrics_port: int | None = Field(
        default=9464, ge=0, le=65535, description="Prometheus /metrics port; None = off."
    )
    metrics_host: str = "0.0.0.0"
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    dedup_size: int = Field(default=10_000, gt=0, description="Recent ids kept per connector.")


class ListenerSettings(BaseSettings):
    """Root settings of the ``listen`` / ``replay`` processes."""

    model_config = SettingsConfigDict(
        env_prefix="LISTENER_",
        env_nested_delimiter="__",
        frozen=True,
        extra="ignore",
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    listen: ListenSettings = Field(default_factory=ListenSettings)
    brands: tuple[BrandSettings, ...] = ()
    connectors: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description=(
            "Connector name -> its settings block; a block present means enabled. Each "
            "block is validated by that connector's own Settings model at start-up."
        ),
    )
