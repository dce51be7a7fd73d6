#!/usr/bin/env bash
# Creates the Python venv with the official TFLite runtime (LiteRT) that the
# worker's golden test and pose benchmark compare against. Idempotent.
set -euo pipefail
VENV="${GOLFTRACKER_LITERT_VENV:-$HOME/.cache/golftracker/litert-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import ai_edge_litert.interpreter, numpy" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "ai-edge-litert==2.3.0" "numpy==2.4.6"
fi
echo "$VENV/bin/python"
