"""PNG plots of a run: intent-to-running and message round trip against the number of managed containers."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _x(point: dict[str, Any]) -> float:
    return (point["managed"] + point.get("managed_after", point["managed"])) / 2


def plot(results: dict[str, Any], out_dir: Path, prefix: str = "") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    intent = [p for p in results.get("sweep", []) if p.get("intent_ms", {}).get("n")]
    if intent:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        xs = [_x(p) for p in intent]
        ax.plot(xs, [p["intent_ms"]["p50"] for p in intent], "o-", label="through flow-manager, p50")
        ax.fill_between(
            xs, [p["intent_ms"]["min"] for p in intent], [p["intent_ms"]["p90"] for p in intent], alpha=0.15, label="flow-manager min..p90"
        )
        ax.plot(xs, [p["direct_ms"]["p50"] for p in intent], "s--", label="aiodocker direct, same body, p50")
        ax.set_xlabel("managed containers")
        ax.set_ylabel("create + start until running (ms)")
        ax.set_title("Intent to running vs. managed containers")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
        path = out_dir / f"{prefix}intent_vs_managed.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    rtt = [p for p in results.get("sweep", []) if p.get("rtt_ms", {}).get("n")]
    if rtt:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        xs = [p["managed"] for p in rtt]
        ax.plot(xs, [p["rtt_ms"]["p50"] for p in rtt], "o-", label="ping round trip p50")
        ax.plot(xs, [p["rtt_ms"]["p99"] for p in rtt], "^-", label="ping round trip p99")
        socketio = (results.get("baselines") or {}).get("socketio_rtt_ms") or {}
        if socketio.get("p50"):
            ax.axhline(socketio["p50"], ls="--", color="gray", label="bare Socket.IO call() p50 (same run)")
        ax.axhline(1.5, ls=":", color="green", label="target p50 1.5 ms")
        ax.axhline(5.0, ls=":", color="red", label="target p99 5 ms")
        ax.set_xlabel("managed containers")
        ax.set_ylabel("send_message ping -> message_received pong (ms)")
        ax.set_title("Message round trip (1 client) vs. managed containers")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        path = out_dir / f"{prefix}rtt_vs_managed.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
