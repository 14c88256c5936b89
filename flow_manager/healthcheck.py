"""`flow-manager healthcheck`: one GET of a running manager's /healthz (or /readyz), exit 0 or 1.

For a container's HEALTHCHECK or a systemd watchdog, which run a command rather than an HTTP request. The
answer's JSON (which check failed, and why) is printed; a manager that does not answer within the timeout
(its event loop stalled, or it is gone) fails too.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def default_url(ready: bool = False) -> str:
    """The manager on this machine, as its own settings (the environment) place it."""
    host = os.environ.get("FLOW_MANAGER_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in WILDCARDS else (f"[{host}]" if ":" in host and not host.startswith("[") else host)
    port = os.environ.get("FLOW_MANAGER_PORT", "8000")
    return f"http://{host}:{port}/{'readyz' if ready else 'healthz'}"


def check_url(url: str, timeout: float) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (an operator's own URL)
            print(response.read().decode("utf-8", "replace").strip())
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:  # 503: the body says which check failed
        print(exc.read().decode("utf-8", "replace").strip())
        return 1
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"flow-manager healthcheck: {url}: {getattr(exc, 'reason', exc)}", file=sys.stderr)
        return 1
