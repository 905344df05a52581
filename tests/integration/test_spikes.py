"""Spike alerts end to end: real broker, the worker subprocess with the real model, local sinks.

A calm baseline (one complaint about a brand, then quiet 2-second windows)
and then a burst of complaints about it must give exactly one alert on
``mentions.alerts`` and exactly one PagerDuty trigger and one Slack message
for it, however the burst falls across windows.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
from contract.sink_servers import PagerDutyServer, SlackServer

from integration.helpers import FAST_RETRIES, Servers, Tail, Worker, produce, running, wait_for
from listener.record import Mention, encode_mention
from listener.topics import TopicNames

WINDOW_S = 2.0
BRAND = "VoltAir"
COMPLAINTS = (
    "@{b} your app crashes every time I open it, order #{n} is stuck",
    "Been waiting {n} days for my refund from @{b}. Worst service ever.",
    "@{b} charged me twice this month and nobody answers the phone ({n})",
    "Total outage again @{b}, no service in the whole city since {n}am",
)


def complaints(model: Any, tag: str, count: int) -> list[Mention]:
    posts = [
        Mention.create(
            source="itest",
            native_id=f"{tag}-{i}",
            text=COMPLAINTS[i % len(COMPLAINTS)].format(b=BRAND, n=i + 3),
            brands=(BRAND,),
        )
        for i in range(count * 2)
    ]
    labels = [p.label for p in model.predict([p.text for p in posts])]
    chosen = [p for p, label in zip(posts, labels, strict=True) if label == "complaint"][:count]
    assert len(chosen) == count, "the model should call these complaints"
    return chosen


def test_burst_after_calm_baseline_is_one_alert_one_page(
    kafka_bootstrap: str,
    topics: TopicNames,
    group_id: str,
    classifier: Any,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    calm, burst = complaints(classifier, "calm", 1), complaints(classifier, "burst", 10)
    pagerduty, slack = PagerDutyServer(), SlackServer()
    alerts = Tail(kafka_bootstrap, topics.alerts)
    try:
        with Servers(pagerduty, slack) as servers:
            worker = Worker(tmp_path, kafka_bootstrap, topics, group_id)
            worker.env["AGENTS_SINKS"] = orjson.dumps({
                "pagerduty": {"url": pagerduty.url, "routing_key": "R0UTINGKEY" + "0" * 22},
                "slack": {"url": f"{slack.url}/services/T000/B000/XXXXgoodsecret",
                          "min_interval_s": 0},
            }).decode()  # fmt: skip
            worker.env["AGENTS_DELIVERY"] = orjson.dumps(FAST_RETRIES).decode()
            spikes = {"window_s": WINDOW_S, "min_history": 2, "min_count": 4, "k": 2}
            worker.env["AGENTS_SPIKES"] = orjson.dumps({**spikes, "brands": [BRAND]}).decode()

            def spike_pages() -> list[dict[str, Any]]:
                sent = servers.run(lambda: [orjson.loads(r[3]) for r in pagerduty.requests])
                return [e for e in sent if str(e.get("dedup_key", "")).startswith("spike:")]

            def spike_messages() -> list[str]:
                texts = servers.run(lambda: [str(m["text"]) for m in slack.created.values()])
                return [t for t in texts if " spike for " in t]

            with running(worker):
                wait_for(lambda: worker.get("/health/ready")[0] == 200, 60, "worker ready")
                produce(
                    kafka_bootstrap, topics.raw, [(m.id.encode(), encode_mention(m)) for m in calm]
                )
                time.sleep(WINDOW_S * 3.5)  # the calm windows close: a baseline of 1, 0, 0
                records = [(m.id.encode(), encode_mention(m)) for m in burst]
                produce(kafka_bootstrap, topics.raw, records)
                alerts.until(lambda: len(alerts.records) >= 1, timeout=30, quiet_s=WINDOW_S * 2)
                wait_for(lambda: len(spike_pages()) >= 1, 20, "the PagerDuty trigger")
                wait_for(lambda: len(spike_messages()) >= 1, 20, "the Slack message")
                time.sleep(1.0)  # nothing more arrives
                _, metrics = worker.get("/metrics")
            pages, messages = spike_pages(), spike_messages()
    finally:
        alerts.close()
    assert len(alerts.records) == 1, [v for _, v in alerts.records]
    key, value = alerts.records[0]
    alert = orjson.loads(value)
    assert key == alert["id"].encode() and alert["id"].startswith("spike:voltair:complaint:")
    assert alert["count"] >= 4 and alert["brand"] == "voltair" and alert["label"] == "complaint"
    burst_ids = {m.id for m in burst}
    assert alert["examples"] and {e["id"] for e in alert["examples"]} <= burst_ids
    assert [p["dedup_key"] for p in pages] == [alert["id"]]
    assert pages[0]["event_action"] == "trigger"
    assert len(messages) == 1 and messages[0].startswith("complaint spike for voltair")
    line = b'brandlistener_spike_alerts_total{brand="voltair",label="complaint"} 1.0'
    assert line in metrics
    print(f"\none alert, one page, one message in {time.monotonic() - started:.1f}s")
