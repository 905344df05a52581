"""The worker process's settings root: read once at start-up, passed down.

Blocks: ``kafka`` (shared with the listener: :class:`listener.settings.KafkaSettings`),
``model``, ``batching``, ``health``, ``delivery``, ``sync``, ``spikes``, ``sinks``;
worker-wide fields at the top. Read by :meth:`AgentSettings.load` from flags,
the ``--config`` YAML and the environment (prefix ``AGENTS_``, ``__`` between
levels: ``AGENTS_KAFKA__BOOTSTRAP_SERVERS=broker:9092``,
``AGENTS_MODEL__THREADS=2``); the flat names of earlier releases
(``AGENTS_BOOTSTRAP_SERVERS``, ``model_dir:`` in YAML, ...) still work, with a
deprecation warning (:data:`LEGACY_NAMES`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from agents.delivery.config import DeliverySettings, validate_sinks
from agents.delivery.sync.config import SyncConfig
from agents.pipeline.spikes import SpikeConfig
from listener.settings import KafkaSettings, LayeredSettings, LegacyNames
from listener.topics import TopicNames


class ModelSettings(BaseModel):
    """The intent classifier: which model, and how it uses the CPU (or GPU)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dir: Path | None = Field(
        default=None, description="Classifier model folder; None means the bundled model."
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Posts per ONNX run inside one predict call; None keeps the runtime's default.",
    )
    provider: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description=(
            "Where the classifier runs: auto = CUDA when onnxruntime-gpu sees a GPU and the "
            "model folder has model.fp16.onnx (python -m models.export --fp16), else CPU."
        ),
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads the classifier uses in all; None: the cores this process may use.",
    )
    threads_per_run: int = Field(
        default=1,
        ge=1,
        description=(
            "ONNX Runtime intra-op threads of one inference run; threads // this many "
            "batches run side by side (1: one single-threaded run per thread, the fastest on "
            "2 cores for short posts)."
        ),
    )
    spinning: bool = Field(
        default=False,
        description=(
            "ONNX Runtime intra-op threads spin between runs (only with threads_per_run "
            "> 1: a single-threaded run has no pool to spin). Fastest when the model has the "
            "cores to itself, but in the worker they take the CPU the event loop needs between "
            "runs (slower bursts and latency: deploy/README.md, CPU)."
        ),
    )
    needs_response_threshold: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description=(
            "Fallback only: for records or models without the model's calibrated "
            "needs_response decision, complaints and questions at or above this "
            "top-label confidence go to the queue."
        ),
    )
    needs_response_decision_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description=(
            "The needs_response score at or above which a post goes to the queue, in "
            "place of the model's calibrated threshold (metrics.json), for every source "
            "not listed in needs_response_threshold_by_source. Raise it to queue fewer "
            "posts that need no answer at the cost of missing more that do (the model "
            "card's needs_response trade-off); unset: the model's own."
        ),
    )
    needs_response_threshold_by_source: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Source name (Mention.source) -> the needs_response threshold for its posts, "
            "in place of the model's calibrated one: for a source whose posts the model "
            "scores differently from its training data, e.g. a platform it was not trained "
            "on. `brand-listener eval --by-source` picks one from labelled posts of the "
            "source. Only for a model with a calibrated decision (metrics.json)."
        ),
    )

    @field_validator("needs_response_threshold_by_source")
    @classmethod
    def _thresholds_are_probabilities(cls, value: dict[str, float]) -> dict[str, float]:
        for source, threshold in value.items():
            if not 0.0 <= threshold <= 1.0:
                raise ValueError(f"threshold for source {source!r} must be within 0..1")
        return value


class BatchingSettings(BaseModel):
    """How many events an agent takes from its stream at once, and how long it waits for them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(
        default=512,
        ge=1,
        le=4096,
        description=(
            "Most events an agent takes from its stream at once. Under a steady load a "
            "batch holds what arrived in window_s (a few posts); in a burst it fills, "
            "and the classifier sorts a full batch by length into runs with little padding "
            "(bursts drain faster with larger batches: deploy/README.md, CPU)."
        ),
    )
    window_s: float = Field(
        default=0.05,
        gt=0,
        le=10,
        description="Longest wait to fill a batch: latency bound vs. throughput.",
    )


class HealthSettings(BaseModel):
    """The worker's /metrics and /health server, and what its health checks look at."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    web_host: str = Field(default="0.0.0.0", description="Bind address of /metrics and /health.")
    web_port: int = Field(default=6066, ge=1, le=65535)
    lag_interval_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="How often consumer lag and the queue/SLA gauges are read.",
    )
    stall_after_s: float = Field(
        default=120.0,
        gt=0,
        description="A partition with lag and no committed progress this long fails liveness.",
    )
    recovery_stall_after_s: float = Field(
        default=60.0,
        gt=0,
        description="A table recovery with changelog records left that reads none this long is "
        "restarted (and fails liveness meanwhile).",
    )
    recovery_restarts: int = Field(
        default=2,
        ge=0,
        description="Restarts of one stalled table recovery before the worker crashes to leave "
        "the group (another member or the restarted process takes its partitions over).",
    )


LEGACY_NAMES: LegacyNames = {
    "bootstrap_servers": ("kafka", "bootstrap_servers"),
    "topic_prefix": ("kafka", "topic_prefix"),
    "topic_partitions": ("kafka", "topic_partitions"),
    "topic_replication": ("kafka", "topic_replication"),
    "model_dir": ("model", "dir"),
    "model_batch_size": ("model", "batch_size"),
    "model_provider": ("model", "provider"),
    "model_threads": ("model", "threads"),
    "model_threads_per_run": ("model", "threads_per_run"),
    "model_spinning": ("model", "spinning"),
    "needs_response_threshold": ("model", "needs_response_threshold"),
    "batch_size": ("batching", "size"),
    "batch_window_s": ("batching", "window_s"),
    "web_host": ("health", "web_host"),
    "web_port": ("health", "web_port"),
    "lag_interval_s": ("health", "lag_interval_s"),
    "stall_after_s": ("health", "stall_after_s"),
}
"""Flat settings of releases before the nesting -> their place today (README, Upgrading)."""


class AgentSettings(LayeredSettings):
    """Everything the Faust worker (and the commands that use its topics) is configured by."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTS_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,  # sink blocks carry tokens
    )
    legacy_names: ClassVar[LegacyNames] = LEGACY_NAMES

    kafka: KafkaSettings = Field(
        default_factory=KafkaSettings, description="Brokers, topic prefix, TLS and SASL."
    )
    app_id: str = Field(
        default="brand-listener",
        min_length=1,
        description="Faust app id; also the Kafka consumer group of every worker.",
    )
    model: ModelSettings = Field(default_factory=ModelSettings, description="The classifier.")
    batching: BatchingSettings = Field(
        default_factory=BatchingSettings, description="Agent batch size and wait."
    )
    health: HealthSettings = Field(
        default_factory=HealthSettings, description="/metrics and /health, lag and stall checks."
    )
    commit_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often acked offsets are committed; bounds duplicates after a crash.",
    )
    shutdown_timeout_s: float = Field(
        default=25.0,
        gt=0,
        description=(
            "Longest graceful stop after SIGTERM/SIGINT; then the worker exits with status 75 "
            "(agents/runtime/shutdown.py). Keep it under the supervisor's grace period "
            "(Kubernetes: 30 s)."
        ),
    )
    session_timeout_s: float = Field(
        default=10.0,
        ge=6,
        description="Kafka group session timeout: how soon a dead worker's partitions move.",
    )
    data_dir: Path = Field(
        default=Path(".brand-listener/agents"),
        description="Faust data directory (table state; the tables use memory://).",
    )
    loglevel: str = Field(default="info", description="Worker log level.")
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text or one JSON object each."
    )
    sinks: dict[str, SerializeAsAny[BaseModel]] = Field(
        default_factory=dict,
        description=(
            "Sink name -> its settings block (see agents/sinks/); a block present means "
            "enabled. Validated at start-up by that sink's own settings model."
        ),
    )
    rules_file: Path | None = Field(
        default=None,
        description="Routing rules YAML (see deploy/rules.example.yaml); None = built-in table.",
    )
    delivery: DeliverySettings = Field(
        default_factory=DeliverySettings, description="Retry budget and breaker of every sink."
    )
    sync: SyncConfig = Field(
        default_factory=SyncConfig,
        description="Helpdesk sync-back and PagerDuty updates per sink (all off by default).",
    )

    spikes: SpikeConfig = Field(
        default_factory=SpikeConfig,
        description="Spike detector: window, k, min count, enabled (alerts to mentions.alerts).",
    )

    vetting_window_s: float = Field(
        default=86_400.0,
        ge=0,
        description="Sliding window of author vetting (signals['vetting']); 0 turns it off.",
    )
    dedup_window_s: float = Field(
        default=3600.0,
        ge=0,
        description="Copies of a queued post within this window are not queued; 0 = off.",
    )

    @field_validator("sinks", mode="before")
    @classmethod
    def _validate_sinks(cls, value: Any) -> dict[str, BaseModel]:
        return validate_sinks(value)

    @model_validator(mode="after")
    def _sync_needs_its_sink(self) -> AgentSettings:
        missing = [name for name in self.sync.enabled() if name not in self.sinks]
        if missing:
            names = ", ".join(missing)
            raise ValueError(f"sync enabled for {names} without that sink under sinks")
        return self

    @property
    def topics(self) -> TopicNames:
        """The topic names under this deployment's prefix."""
        return self.kafka.topics
