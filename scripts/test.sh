#!/usr/bin/env bash
# The README's test command (CI runs it through .ci/run): set up the engine and the tools the tests drive
# for real, then install the project as a user does and run the whole suite. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/engine.sh docker-compose prometheus
(cd tests/js && npm install --silent --no-audit --no-fund)   # socket.io-client for the JavaScript client test
pip install -q '.[test]'
exec python -m pytest "$@"
