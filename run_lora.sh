#!/usr/bin/env bash
# LoRA Factory launcher (Linux / macOS).
# Runs the set-up when needed (no .venv, or the marker of a completed set-up is missing), starts the
# server on 127.0.0.1 and opens the browser once it answers. Port: LORA_FACTORY_PORT (default 8081).
# Extra arguments are passed to `lora-factory serve`.
set -euo pipefail

cd "$(dirname "$0")"
PORT="${LORA_FACTORY_PORT:-8081}"
export LORA_FACTORY_PORT="$PORT"
VENV_PY=".venv/bin/python"
MARKER=".venv/lora_factory_setup_ok"

if [ ! -x "$VENV_PY" ] || [ ! -f "$MARKER" ]; then
    echo "初回セットアップを実行します / running the set-up first (python setup.py --no-start)"
    PYTHON_BIN=""
    for candidate in python3 python; do
        if command -v "$candidate" >/dev/null 2>&1; then PYTHON_BIN="$candidate"; break; fi
    done
    if [ -z "$PYTHON_BIN" ]; then
        echo "Python 3.10 以上が見つかりません。インストールしてください。" >&2
        echo "Python 3.10 or newer was not found; please install it." >&2
        exit 1
    fi
    "$PYTHON_BIN" setup.py --no-start
fi

".venv/bin/lora-factory" serve --host 127.0.0.1 --port "$PORT" "$@" &
SERVER_PID=$!

# Wait for the server, then open the browser; a machine without a browser is not an error.
(
    if "$VENV_PY" setup.py --wait-for-server >/dev/null 2>&1; then
        URL="http://127.0.0.1:$PORT"
        echo "LoRA Factory: $URL"
        if [ -z "${LORA_FACTORY_NO_BROWSER:-}" ]; then
            if command -v xdg-open >/dev/null 2>&1 && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
                xdg-open "$URL" >/dev/null 2>&1 || true
            elif command -v open >/dev/null 2>&1 && [ "$(uname -s)" = "Darwin" ]; then
                open "$URL" >/dev/null 2>&1 || true
            fi
        fi
    fi
) &
OPENER_PID=$!

stop_all() {
    kill "$OPENER_PID" 2>/dev/null || true
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}
trap 'stop_all; exit 130' INT TERM

set +e
wait "$SERVER_PID"
STATUS=$?
kill "$OPENER_PID" 2>/dev/null || true
exit "$STATUS"
