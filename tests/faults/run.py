"""Many seeds, one report: ``python -m tests.faults.run --seeds 200 --out report.json``.

Each seed is a fresh cluster (redis-server, replicas, HAProxy, devices) run through its own
schedule; the report lists every seed's figures and, for a seed with anomalies, its history.
Re-run one seed with ``--first SEED --seeds 1``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.faults.runner import Result, run_schedule
from tests.faults.schedule import generate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.run", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("--window", type=float, default=6.0, help="seconds of faults per seed")
    parser.add_argument("--out", type=Path, default=Path("faults-report.json"))
    parser.add_argument("--logs", type=Path, help="keep each seed's process logs under this folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results: list[Result] = []
    began = time.monotonic()
    for seed in range(args.first, args.first + args.seeds):
        schedule = generate(seed, window=args.window)
        result = run_schedule(schedule, args.logs / str(seed) if args.logs else None)
        results.append(result)
        print(
            f"seed {seed}: {len(schedule.steps)} faults, {result.describe()['acked']} acked, "
            f"{len(result.anomalies)} anomalies, {result.seconds:.1f} s",
            file=sys.stderr,
        )
        args.out.write_text(json.dumps(_report(results, began), indent=1))
    report = _report(results, began)
    print(json.dumps({key: value for key, value in report.items() if key != "seeds"}))
    return 1 if report["anomalies"] else 0


def _report(results: list[Result], began: float) -> dict[str, Any]:
    """The figures first; each seed's own, with its history when it found something."""
    return {
        "seeds_run": len(results),
        "seconds": round(time.monotonic() - began, 1),
        "presses": sum(len(result.history.presses) for result in results),
        "acked_presses": sum(press.outcome == "ok" for result in results for press in result.history.presses),
        "faults": sum(len(result.schedule.steps) for result in results),
        "anomalies": sum(len(result.anomalies) for result in results),
        "seeds_with_anomalies": [result.schedule.seed for result in results if result.anomalies],
        "seeds_with_errors": [result.schedule.seed for result in results if result.errors],
        "seeds": [
            result.describe(with_history=bool(result.anomalies or result.errors)) for result in results
        ],
    }


if __name__ == "__main__":
    sys.exit(main())
