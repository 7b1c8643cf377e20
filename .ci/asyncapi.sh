#!/usr/bin/env bash
# Checks docs/asyncapi.yaml (tests/asyncapi/check.mjs): @asyncapi/parser validation, every message
# example of docs/protocol.md, and every event of an end-to-end run against `ctid --demo`.
# ctid's log: target/asyncapi/ctid.log. Exit 0 when it passed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
echo "== AsyncAPI document: @asyncapi/parser, protocol.md examples, an end-to-end run against ctid --demo"

(cd tests/asyncapi && npm ci --no-audit --no-fund --loglevel=error)
cargo build -q --bin ctid
bin="${CARGO_TARGET_DIR:-target}/debug"

out=target/asyncapi
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
    echo "asyncapi: ctid --demo exited"; cat "$log"; exit 1
  fi
  sleep 0.1
done
[ -n "$url" ] && [ -n "$sim" ] || { echo "asyncapi: ctid --demo did not start"; cat "$log"; exit 1; }
echo "asyncapi: ctid --demo at $url, csta-sim control API at $sim"

status=0
CTID_WS="$url" CSTA_SIM="$sim" node tests/asyncapi/check.mjs || status=$?
if [ "$status" -ne 0 ]; then
  echo "asyncapi: failed; last lines of $log:"
  tail -n 40 "$log"
fi
exit "$status"
