"""Settings roots of the processes, and the one Kafka block they share.

Each process reads one settings root once at start-up (:meth:`LayeredSettings.load`)
from, highest priority first:

1. command-line flags (the ``load`` keyword arguments, nested like the settings);
2. the YAML file given with ``--config``;
3. environment variables: the root's prefix (``LISTENER_`` for ``listen`` and
   ``replay``, ``AGENTS_`` for the worker and the commands that talk to its
   topics) and ``__`` between levels, e.g. ``LISTENER_KAFKA__BOOTSTRAP_SERVERS``
   or ``AGENTS_KAFKA__SASL_PASSWORD``;
4. the defaults.

Names of earlier releases (flat ones such as ``AGENTS_BOOTSTRAP_SERVERS`` or
``LISTENER_KAFKA_BOOTSTRAP_SERVERS``, and flat keys in YAML files) still work,
each with a deprecation warning naming its new place (README, *Upgrading*).

:class:`KafkaSettings` is the one description of a Kafka connection (brokers,
topic prefix, TLS and SASL) for every client of every process: the Faust
worker (aiokafka), the connectors' producer, replay, ack and the ledger
(kafka-python), the lag monitor. Nothing here is a module-level global.
"""

from __future__ import annotations

import contextvars
import logging
import os
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from listener.brands import BrandSettings
from listener.topics import TopicNames

log = logging.getLogger(__name__)

LegacyNames = Mapping[str, tuple[str, ...]]
"""A flat name of an earlier release -> its path today, e.g. ``("kafka", "topic_prefix")``."""

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "brand_listener_config_file", default=None
)


def without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every None dropped, at every level (flags not given)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            nested = without_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``top`` merged in, nested mappings merged key by key (``top`` wins)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _deprecated(old: str, new: str) -> None:
    log.warning("%s is deprecated; use %s (README, Upgrading)", old, new)


def move_legacy_keys(data: dict[str, Any], legacy: LegacyNames, where: str) -> dict[str, Any]:
    """Move flat keys of an earlier release in ``data`` to their nested place (they win there)."""
    moved = dict(data)
    for old, path in legacy.items():
        if old not in moved:
            continue
        value = moved.pop(old)
        _deprecated(f"{where}{old}", f"{where}{'.'.join(path)}")
        nested: dict[str, Any] = {path[-1]: value}
        for part in reversed(path[:-1]):
            nested = {part: nested}
        moved = deep_merge(moved, nested)
    return moved


class Overridable(BaseModel):
    """A settings model whose command-line flags win over everything else (:meth:`override`)."""

    def override(self, **changes: object) -> Self:
        """A validated copy with ``changes`` merged in (nested mappings key by key; None ignored).

        Raises:
            pydantic.ValidationError: A change is not a valid value for its field.
        """
        return type(self).model_validate(deep_merge(self.model_dump(), without_none(changes)))


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(Overridable):
    """How every client reaches the Kafka cluster, and this deployment's topic-name prefix.

    Security: ``security_protocol`` SSL or SASL_SSL encrypts (the broker's
    certificate is checked against ``ssl_cafile``, or the system's CAs, and its
    host name is verified unless ``ssl_check_hostname`` is false);
    SASL_PLAINTEXT or SASL_SSL authenticate with ``sasl_mechanism`` (PLAIN or
    SCRAM-SHA-256/512) as ``sasl_username``; ``ssl_certfile`` / ``ssl_keyfile``
    add a client certificate (mutual TLS). Managed services (Confluent Cloud,
    MSK with SASL/SCRAM, Aiven, Redpanda Cloud) use SASL_SSL.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

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
    topic_partitions: int = Field(
        default=4,
        ge=1,
        description="Partitions of the topics a process creates (unit of scale-out).",
    )
    topic_replication: int = Field(
        default=1, ge=1, description="Replicas of the topics it creates."
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: SaslMechanism = Field(
        default="PLAIN", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (SASL_* only)."
    )
    sasl_username: str | None = Field(default=None, description="SASL user (SASL_* only).")
    sasl_password: SecretStr | None = Field(default=None, description="SASL password.")
    ssl_cafile: Path | None = Field(
        default=None, description="PEM file of the CA(s) that signed the brokers' certificates."
    )
    ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate (mutual TLS; with ssl_keyfile)."
    )
    ssl_keyfile: Path | None = Field(default=None, description="PEM private key of ssl_certfile.")
    ssl_key_password: SecretStr | None = Field(default=None, description="ssl_keyfile's password.")
    ssl_check_hostname: bool = Field(
        default=True, description="Verify that the broker's certificate names its host."
    )

    @model_validator(mode="after")
    def _security_is_complete(self) -> Self:
        if self.sasl and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username and sasl_password"
            )
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mutual TLS)")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: no such file: {path}")
        return self

    @property
    def sasl(self) -> bool:
        """Whether clients authenticate with SASL."""
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        """Whether connections are encrypted with TLS."""
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def topics(self) -> TopicNames:
        """The topic names under this deployment's prefix."""
        return TopicNames(prefix=self.topic_prefix)

    def bootstrap_list(self) -> list[str]:
        """``bootstrap_servers`` split on commas, blanks dropped."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of aiokafka clients (None for PLAINTEXT and SASL_PLAINTEXT)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile is not None and self.ssl_keyfile is not None:
            password = self.ssl_key_password.get_secret_value() if self.ssl_key_password else None
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile), password)
        return context

    def kafka_python(self) -> dict[str, Any]:
        """Connection and security keyword arguments of a kafka-python client."""
        config = self._connection()
        if self.tls:
            config["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                if getattr(self, name) is not None:
                    config[name] = str(getattr(self, name))
            if self.ssl_key_password is not None:
                config["ssl_password"] = self.ssl_key_password.get_secret_value()
        return config

    def aiokafka(self) -> dict[str, Any]:
        """Connection and security keyword arguments of an aiokafka client."""
        config = self._connection()
        if self.tls:
            config["ssl_context"] = self.ssl_context()
        return config

    def _connection(self) -> dict[str, Any]:
        # What both client libraries name alike: brokers, protocol, SASL login.
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_list(),
            "security_protocol": self.security_protocol,
        }
        if self.sasl:
            assert self.sasl_password is not None  # checked by the validator
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return config


KAFKA_FIELDS = tuple(KafkaSettings.model_fields)

KafkaConnection = KafkaSettings | str | Sequence[str]
"""Where a client connects: a process's :class:`KafkaSettings` (security included), or
the bootstrap servers of a PLAINTEXT cluster (the local broker of the demo and the tests)."""


def kafka_settings_of(connection: KafkaConnection) -> KafkaSettings:
    """``connection`` as :class:`KafkaSettings` (bootstrap servers: PLAINTEXT, defaults)."""
    if isinstance(connection, KafkaSettings):
        return connection
    servers = connection if isinstance(connection, str) else ",".join(connection)
    return KafkaSettings(bootstrap_servers=servers)


class _LegacyEnvSource(PydanticBaseSettingsSource):
    """Environment variables of earlier releases (flat names), mapped to today's nesting."""

    def __init__(self, settings_cls: type[BaseSettings], prefix: str, legacy: LegacyNames) -> None:
        super().__init__(settings_cls)
        self._prefix, self._legacy = prefix, legacy

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads everything at once

    def __call__(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        environ = {k.upper(): v for k, v in os.environ.items()}
        for old, path in self._legacy.items():
            name = f"{self._prefix}{old}".upper()
            if name not in environ:
                continue
            new = f"{self._prefix}{'__'.join(path)}".upper()
            _deprecated(name, new)
            nested: dict[str, Any] = {path[-1]: environ[name]}
            for part in reversed(path[:-1]):
                nested = {part: nested}
            found = deep_merge(found, nested)
        return found


class _YamlFileSource(PydanticBaseSettingsSource):
    """The ``--config`` YAML file (flat keys of earlier releases moved to their nesting)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path, legacy: LegacyNames) -> None:
        super().__init__(settings_cls)
        self._path, self._legacy = path, legacy

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the file at once

    def __call__(self) -> dict[str, Any]:
        import yaml

        try:
            data = yaml.safe_load(self._path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{self._path}: not YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(
                f"{self._path}: expected a mapping of settings, got {type(data).__name__}"
            )
        return move_legacy_keys(data, self._legacy, f"{self._path}: ")


class LayeredSettings(BaseSettings, Overridable):
    """A process's settings root: flags over the ``--config`` YAML over the environment.

    Subclasses set ``model_config`` (``env_prefix``, ``env_nested_delimiter="__"``)
    and :attr:`legacy_names`.
    """

    legacy_names: ClassVar[LegacyNames] = {}
    """Flat names of earlier releases (without the prefix) -> their path today."""

    @model_validator(mode="before")
    @classmethod
    def _move_legacy_keys(cls, data: Any) -> Any:
        # Flat keyword arguments of earlier releases (flags, override, Python callers).
        if isinstance(data, dict) and cls.legacy_names:
            return move_legacy_keys(data, cls.legacy_names, "")
        return data

    @classmethod
    def load(cls, config_file: Path | None = None, **flags: Any) -> Self:
        """Read the settings: ``flags`` (None values ignored), then ``config_file``, then the env.

        Raises:
            OSError: ``config_file`` cannot be read.
            ValueError: It is not YAML or not a mapping.
            pydantic.ValidationError: A value is invalid; the error names the field.
        """
        if config_file is not None and not config_file.is_file():
            raise FileNotFoundError(f"{config_file}: no such file")
        token = _config_file.set(config_file)
        try:
            return cls(**without_none(flags))
        finally:
            _config_file.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Flags, the YAML file, the environment, then the environment's legacy names."""
        prefix = str(cls.model_config.get("env_prefix", ""))
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        config_file = _config_file.get()
        if config_file is not None:
            sources.append(_YamlFileSource(settings_cls, config_file, cls.legacy_names))
        sources += [env_settings, _LegacyEnvSource(settings_cls, prefix, cls.legacy_names)]
        return tuple(sources)


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


class ListenerSettings(LayeredSettings):
    """Root settings of the ``listen`` / ``replay`` processes (environment: ``LISTENER_``)."""

    model_config = SettingsConfigDict(
        env_prefix="LISTENER_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
    )
    legacy_names: ClassVar[LegacyNames] = {
        f"kafka_{name}": ("kafka", name) for name in KAFKA_FIELDS
    }

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
