"""``make soak``: each chaos scenario over at least 50,000 posts at ~400 posts/s, several runs.

Starts its own broker (the broker-restart scenario restarts it; the others
share one per run) and prints one line per run with lost (must be 0),
duplicates, committed lag and each stop's exit status and time. Exits 1 if
any run lost a post or left an offset uncommitted.

    .venv/bin/python tests/chaos/soak.py [--runs 5] [--rate 400] [--posts 50000]
        [--scenario sigterm_in_turn ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from chaos.harness import SCENARIOS, own_broker, run_scenario, sink_outage  # noqa: E402

STEPS = {"sigterm_in_turn": 6, "kill9_in_turn": 6, "scale_up_and_down": 5, "broker_restart": 2}
"""How many ``busy_s`` periods each scenario spends under load (to size it to ``--posts``)."""


def main() -> int:
    """Parse the options, run, print, and fail on any loss."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=400.0, help="posts/s offered")
    parser.add_argument("--posts", type=int, default=50_000, help="posts per run, at least")
    choices = [*SCENARIOS, "sink_outage"]
    parser.add_argument("--scenario", action="append", choices=choices)
    args = parser.parse_args()
    failed = 0
    names = args.scenario or choices
    drain_s = max(300.0, args.posts / 100)
    # The sink outage's backlog becomes tickets one HTTP call each: give it longer.
    sink_drain_s = max(900.0, args.posts / 40)
    for run in range(args.runs):  # round-robin, so every scenario has runs early
        for name in names:
            busy_s = args.posts / args.rate / STEPS.get(name, 2)
            started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
            with tempfile.TemporaryDirectory(prefix=f"soak-{name}-{run}-") as tmp:
                with own_broker(Path(tmp)) as broker:
                    if name == "sink_outage":
                        outcome, sink = sink_outage(
                            Path(tmp), broker.bootstrap, args.rate, busy_s, sink_drain_s
                        )
                        extra = f"; {sink.line()}"
                        bad = bool(sink.missing or sink.repeated)
                    else:
                        outcome = run_scenario(
                            name, Path(tmp), broker.bootstrap, args.rate, busy_s, broker, drain_s
                        )
                        extra, bad = "", False
            print(f"[{started}] run {run + 1}/{args.runs} {outcome.line()}{extra}", flush=True)
            failed += bool(outcome.lost or outcome.committed_lag or bad)
    print(f"{failed} failing run(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
