"""`python -m bench`: run every benchmark, print the targets table, write the JSON (and the plots).

Needs the Docker engine and the flow:latest image (see README), psutil and
matplotlib (`pip install '.[bench]'`). Takes about 10 minutes; every container
it creates is named fmbench-<run>-... and removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NoReturn

import aiodocker

from bench.plots import plot
from bench.report import evaluate, table
from bench.run import Run, force_cleanup, log
from bench.session import Sizes


def _interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C does


async def _safety_net(run_id: str) -> int:
    async with aiodocker.Docker() as docker:
        return await force_cleanup(docker, [f"bench-{run_id}", f"bench-{run_id}-direct"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results"), help="directory for the JSON, the plots and the manager's log (default bench/results)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the bench, not a measurement")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _interrupt)
    run_id = secrets.token_hex(3)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"bench-{stamp}-{run_id}"
    sizes = Sizes.quick() if args.quick else Sizes()
    workdir = Path(tempfile.mkdtemp(prefix=f"fmbench-{run_id}-"))
    log(f"run {run_id}: sizes {sizes}, work dir {workdir}")
    try:
        results = asyncio.run(Run(run_id, sizes, workdir, keep_log=Path(f"{stem}-manager.log")).execute())
    finally:
        left = asyncio.run(_safety_net(run_id))  # after a crash or Ctrl-C too
        if left:
            log(f"safety net removed {left} containers")

    rows = evaluate(results)
    results["targets"] = [row.as_dict() for row in rows]
    results["table"] = table(rows)
    if not args.no_plots:
        results["plots"] = [str(p) for p in plot(results, args.out, prefix=f"{stem.name}-")]
    Path(f"{stem}.json").write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    print()
    if args.quick:
        print(f"QUICK RUN (--quick): a smoke test of the bench, not a measurement; the row names give the full sizes, this run used {sizes}")
    print(results["table"])
    print()
    if results["errors"]:
        print(f"phases that failed: {', '.join(results['errors'])}")
    print(f"JSON: {stem}.json")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
