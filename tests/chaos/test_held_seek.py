"""Deterministic: records fetched while a rebalance's committed-offset seek is held skip no post.

Worker A (``held_seek_worker.py``) processes a steady stream; worker B joins
its group, and A's seek after the rebalance is held until A has fetched 300
more records of ``mentions.raw``. With stock Faust those records reach the
agents before the seek and its gap logic then commits past posts nobody
processed. Here every post Kafka acknowledged must end in
``mentions.classified`` or the dead-letter topic, and every partition's
committed offset must reach its end.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from chaos.harness import ROOT, Run, ids_in

HELD_RECORDS = 300


def test_a_held_seek_hands_no_stale_record_over_and_commits_every_offset(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    run = Run(tmp_path, kafka_bootstrap, "held_seek", rate=200.0)
    run.env = {
        "HOLD_SEEK_RECORDS": str(HELD_RECORDS),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    held = [sys.executable, str(ROOT / "tests" / "chaos" / "held_seek_worker.py")]
    try:
        run.feeder.start()
        a = run.worker(held)
        deadline = time.monotonic() + 60
        while sum(ids_in(kafka_bootstrap, run.topics.classified).values()) < 300:
            assert time.monotonic() < deadline, a.tail()
            time.sleep(1)
        b = run.worker()
        time.sleep(15)
        run.stop(b, signal.SIGTERM)
        outcome = run.drain(last=a)
    finally:
        run.close()
    log = a.log.read_text()
    releases = [line for line in log.splitlines() if "HELD SEEK" in line]
    print(f"\n{outcome.line()}\n" + "\n".join(releases))
    assert releases, "a seek after a rebalance was held"
    assert any(int(line.split("after ")[1].split()[0]) >= HELD_RECORDS for line in releases), (
        "records were fetched while the seek was held (the race window was open)"
    )
    assert outcome.lost == [], f"posts never classified: {outcome.lost[:10]}"
    assert outcome.committed_lag == 0, "every partition's committed offset reached its end"
