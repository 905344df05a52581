from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import faust
import pytest
from prometheus_client import CollectorRegistry

from agents.observability.metrics import create, register_views, render
from listener.record import LABELS, Classification, Mention


def _classified(ingested: float, classified: float, routed: float | None = None) -> Mention:
    mention = Mention.create(
        source="hn",
        native_id="42",
        text="why is it down?",
        created_at=datetime.now(UTC),
        stage_times={"ingested": ingested},
    )
    scores = dict.fromkeys(LABELS, 0.1) | {"question": 0.7}
    mention = mention.with_stage(
        "classified",
        at=classified,
        classification=Classification(label="question", scores=scores, model="kw@1"),
    )
    return mention if routed is None else mention.with_stage("routed", at=routed)


def test_create_registers_every_metric_on_the_given_registry_only() -> None:
    registry = CollectorRegistry()
    metrics = create(registry)
    metrics.dead_letter.labels(stage="classify", reason="decode").inc()
    metrics.needs_response.labels(priority="P3", team="support", label="question").inc(2)
    metrics.classifier_batch_size.observe(16)
    metrics.classifier_batch_seconds.observe(0.02)
    get = registry.get_sample_value
    assert get("brandlistener_dead_letter_total", {"stage": "classify", "reason": "decode"}) == 1
    queued = {"priority": "P3", "team": "support", "label": "question"}
    assert get("brandlistener_needs_response_total", queued) == 2
    assert get("brandlistener_classifier_batch_size_count") == 1
    assert get("brandlistener_classifier_batch_size_bucket", {"le": "16.0"}) == 1
    assert get("brandlistener_classifier_batch_seconds_sum") == pytest.approx(0.02)
    # a second bundle needs a second registry: nothing is global
    create(CollectorRegistry())
    with pytest.raises(ValueError):
        create(registry)


def test_observe_stage_latencies() -> None:
    registry = CollectorRegistry()
    metrics = create(registry)
    get = registry.get_sample_value
    processed = "brandlistener_mentions_processed_total"
    stage = "brandlistener_stage_latency_seconds_sum"
    metrics.observe_stage(_classified(100.0, 100.2), "classified")
    metrics.observe_stage(_classified(100.0, 100.2, 103.0), "routed")
    assert get(processed, {"stage": "classified", "label": "question"}) == 1
    assert get(processed, {"stage": "routed", "label": "question"}) == 1
    assert get(stage, {"stage": "classified"}) == pytest.approx(0.2)
    assert get(stage, {"stage": "routed"}) == pytest.approx(2.8)
    assert get("brandlistener_end_to_end_latency_seconds_sum") == pytest.approx(3.0)
    assert get("brandlistener_end_to_end_latency_seconds_bucket", {"le": "0.01"}) == 0
    assert get("brandlistener_end_to_end_latency_seconds_bucket", {"le": "5.0"}) == 1
    assert get("brandlistener_end_to_end_latency_seconds_bucket", {"le": "300.0"}) == 1


def test_render_is_prometheus_text() -> None:
    registry = CollectorRegistry()
    create(registry).dead_letter.labels(stage="route", reason="validation").inc()
    body, content_type = render(registry)
    assert content_type.startswith("text/plain")
    assert b'brandlistener_dead_letter_total{reason="validation",stage="route"} 1.0' in body


def test_views_are_registered_on_the_app() -> None:
    app = faust.App("test-metrics-views", broker="kafka://127.0.0.1:1", store="memory://")
    registry = CollectorRegistry()
    create(registry).needs_response.labels(priority="P1", team="esc", label="complaint").inc()
    register_views(app, registry)
    metrics_view = app.web.views["/metrics"]

    async def call() -> tuple[int, bytes]:
        metrics = await metrics_view.get(None)  # type: ignore[arg-type]
        return metrics.status, metrics.body

    status, body = asyncio.run(call())
    assert status == 200
    expected = b'brandlistener_needs_response_total{label="complaint",priority="P1",team="esc"} 1.0'
    assert expected in body


def test_routed_counts_by_capped_source_and_brand_and_created_latency() -> None:
    registry = CollectorRegistry()
    metrics = create(registry, source_limit=1, brand_limit=2)
    get = registry.get_sample_value
    created = datetime.fromtimestamp(90.0, UTC)
    for source, brands in (("hn", ("acme", "zeta")), ("rss", ("omega",)), ("hn", ())):
        mention = _classified(100.0, 100.2, 103.0).model_copy(
            update={"source": source, "brands": brands, "created_at": created}
        )
        metrics.observe_stage(mention, "routed")
    by_source = "brandlistener_routed_by_source_total"
    by_brand = "brandlistener_routed_by_brand_total"
    assert get(by_source, {"source": "hn", "label": "question"}) == 2
    assert get(by_source, {"source": "other", "label": "question"}) == 1  # over the cap
    assert get(by_source, {"source": "rss", "label": "question"}) is None
    assert get(by_brand, {"brand": "acme", "label": "question"}) == 1
    assert get(by_brand, {"brand": "zeta", "label": "question"}) == 1
    assert get(by_brand, {"brand": "other", "label": "question"}) == 2  # omega, and no brand
    assert get("brandlistener_created_to_routed_seconds_sum") == pytest.approx(39.0)
    assert get("brandlistener_created_to_routed_seconds_bucket", {"le": "10.0"}) == 0
    assert get("brandlistener_created_to_routed_seconds_bucket", {"le": "30.0"}) == 3
