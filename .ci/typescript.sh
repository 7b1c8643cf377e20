#!/usr/bin/env bash
# CI: the TypeScript client @ctid/client (clients/typescript): npm ci, the build, the checks that
# the generated files are fresh (src/messages.ts from docs/asyncapi.yaml, the web monitor's
# crates/server/src/web/ctid-client.js from src/client.ts), the type checks (including the README
# example), then its tests with Node's test runner against `ctid --demo` (started here, killed on
# exit; one test also starts and restarts ctid --demo instances of its own from CTID_BIN).
# ctid's log: target/typescript/ctid.log. Exit 0 when everything passed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

cargo build -q --bin ctid
bin="$(cd "${CARGO_TARGET_DIR:-target}/debug" && pwd)"

cd clients/typescript
npm ci --no-audit --no-fund --loglevel=error
npm run -s build
npm run -s check

out="$root/target/typescript"
mkdir -p "$out"
log="$out/ctid.log"
RUST_LOG="${RUST_LOG:-info}" "$bin/ctid" --demo --listen 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT

url=""
sim=""
for _ in $(seq 1 200); do
  url="$(grep -o 'ws://127\.0\.0\.1:[0-9]*/ws' "$log" | head -n1 || true)"
  sim="$(grep -o 'control API: http://127\.0\.0\.1:[0-9]*' "$log" | head -n1 | sed 's/^control API: //' || true)"
  [ -n "$url" ] && [ -n "$sim" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "typescript: ctid --demo exited"; cat "$log"; exit 1
  fi
  sleep 0.1
done
[ -n "$url" ] && [ -n "$sim" ] || { echo "typescript: ctid --demo did not start"; cat "$log"; exit 1; }
echo "typescript: ctid --demo at $url, csta-sim control API at $sim"

status=0
CTID_URL="$url" CSTA_SIM="$sim" CTID_BIN="$bin/ctid" npm test || status=$?
if [ "$status" -ne 0 ]; then
  echo "typescript: failed; last lines of $log:"
  tail -n 40 "$log"
fi
exit "$status"
