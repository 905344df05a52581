"""Helpers shared by the ``listen`` integration tests (test_listen, test_listen_e2e)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from listener.listen import listen, load_settings
from listener.topics import TopicNames


def start_listen_on_jetstream(
    tmp_path: Path, jetstream_url: str, bootstrap: str, topics: TopicNames
) -> asyncio.Task[int]:
    """Start ``listen`` in the running loop: brand ``acme``, bluesky on a local Jetstream.

    Its config is ``tmp_path/listen.yaml`` and its cursors ``tmp_path/cursors``;
    stop it with :func:`stop_listen`.
    """
    config = tmp_path / "listen.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"cursor_dir": str(tmp_path / "cursors"), "metrics_port": None},
                "brands": [{"name": "acme", "keywords": ["acme"]}],
                "connectors": {"bluesky": {"url": jetstream_url, "rewind_s": 0.002}},
            }
        )
    )
    settings = load_settings(config, bootstrap_servers=bootstrap, topic_prefix=topics.prefix)
    return asyncio.create_task(listen(settings, registry_=CollectorRegistry()))


async def stop_listen(task: asyncio.Task[int]) -> int:
    """SIGTERM this process (``listen``'s own handler stops the runner); its exit status."""
    os.kill(os.getpid(), signal.SIGTERM)
    return await asyncio.wait_for(task, 30)
