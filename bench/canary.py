"""A process that does nothing but measure its own event-loop lag: the same-run baseline of target 5.

Creating, stopping and deleting containers keeps the kernel and dockerd busy;
on a small machine every process then waits for a CPU now and then. The
canary runs the manager's own LoopMonitor (same interval, same event loop
implementation) during the churn, so the manager's lag can be compared with
what an idle process on the same machine suffered in the same seconds.

`python -m bench.canary`: runs until stdin closes, then prints the lag window as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

from api.diagnostics import LoopMonitor


async def _main() -> None:
    monitor = LoopMonitor()  # the manager's default interval
    monitor.start()
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the bench closes our stdin
    monitor.stop()
    print(json.dumps(monitor.snapshot()), flush=True)


def main() -> None:
    try:
        import uvloop  # the manager runs on uvloop when it is installed (uvicorn's default)
    except ImportError:
        asyncio.run(_main())
    else:
        uvloop.run(_main())


if __name__ == "__main__":
    main()
