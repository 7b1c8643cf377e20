#!/usr/bin/env bash
# Browser test of ctid's web monitor: headless Debian chromium driven by playwright-core
# (tests/browser) against `ctid --demo`. Screenshots: target/browser/monitor.png (hot desk and
# call shown) and monitor-after.png; ctid's log: target/browser/ctid.log. Exit 0 when it passed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

if [ ! -x /usr/bin/chromium ]; then
  echo "browser: installing Debian's chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
cargo build -q -p ctid-server -p ctid-client --bin ctid --bin ctictl
bin="${CARGO_TARGET_DIR:-target}/debug"

out=target/browser
mkdir -p "$out"
rm -f "$out"/*.png
log="$out/ctid.log"
RUST_LOG="${RUST_LOG:-info}" "$bin/ctid" --demo --listen 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT

url=""
for _ in $(seq 1 200); do
  url="$(grep -o 'ws://127\.0\.0\.1:[0-9]*/ws' "$log" | head -n1 || true)"
  [ -n "$url" ] && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "browser: ctid --demo exited"; cat "$log"; exit 1
  fi
  sleep 0.1
done
[ -n "$url" ] || { echo "browser: ctid --demo did not start"; cat "$log"; exit 1; }
http="http${url#ws}"
http="${http%/ws}"
echo "browser: ctid --demo at $http"

status=0
CTID_HTTP="$http" CTICTL="$(cd "$bin" && pwd)/ctictl" SHOT_DIR="$root/$out" \
  node tests/browser/monitor.test.mjs || status=$?
if [ "$status" -ne 0 ]; then
  echo "browser: failed; last lines of $log:"
  tail -n 40 "$log"
fi
exit "$status"
