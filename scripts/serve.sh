#!/usr/bin/env bash
# The README's run command: set up the engine when needed, install flow-manager as a user does, serve.
# Arguments go to `flow-manager serve` (for example --host, --port, --volume-roots).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/engine.sh
pip install -q .
exec flow-manager serve "$@"
