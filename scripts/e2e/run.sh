#!/usr/bin/env bash
# `make e2e`: start the deployment, run tests/e2e against it, stop everything it started.
# The tests start and stop the processes themselves; this trap is the safety net: whatever
# process group is still listed in $E2E_DIR/pids when this script exits is terminated, and
# what $E2E_DIR/made.json still lists (databases, services started) is undone.
set -euo pipefail
cd "$(dirname "$0")/../.."
export E2E_DIR="${E2E_DIR:-$PWD/.e2e/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$E2E_DIR/pids"

cleanup() {
  local pid_file pid
  for pid_file in "$E2E_DIR"/pids/*.pid; do
    [ -e "$pid_file" ] || continue
    pid="$(cat "$pid_file")"
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  sleep 2
  for pid_file in "$E2E_DIR"/pids/*.pid; do
    [ -e "$pid_file" ] || continue
    pid="$(cat "$pid_file")"
    if kill -0 -- "-$pid" 2>/dev/null; then
      echo "[e2e] $(basename "$pid_file" .pid) still running: killing process group $pid"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
  done
  # The databases the run made and any service it had to start (normally undone by the tests).
  .venv/bin/python -m devtools.e2e.cleanup "$E2E_DIR" || echo "[e2e] cleanup failed: see $E2E_DIR/made.json"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$(date +%s)
status=0
PYTHONUNBUFFERED=1 .venv/bin/python -m pytest tests/e2e -m e2e -p no:cacheprovider -v --junitxml="$E2E_DIR/junit.xml" || status=$?
echo "[e2e] wall time: $(( $(date +%s) - started ))s; logs, screenshots and run reports: $E2E_DIR"
exit "$status"
