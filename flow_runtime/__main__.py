"""`python3 -m flow_runtime`: exits 0 on SIGTERM from its first statement, then runs the runtime.

This module is kept tiny on purpose. The image runs without bytecode caches, so Python compiles a
module's whole source before its first statement runs (tens of ms for the runtime), and importing
asyncio takes 0.2 s more: a SIGTERM that came meanwhile (a stop right after a start) used to end the
runtime by the signal (exit code 143). The handler below is installed before any of that;
Runtime.run replaces it with the event loop's own.
"""

import signal
import sys


def _exit_while_starting(signum: int, frame: object) -> None:
    """SIGTERM before the event loop took over: there is nothing to close yet, so exit 0 at once."""
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _exit_while_starting)
    from flow_runtime.runtime import main

    main()
