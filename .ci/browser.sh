#!/usr/bin/env bash
# Browser test of ctid's web monitor: headless Debian chromium driven by playwright-core
# (tests/browser) against `ctid --demo`. Screenshots: target/browser/monitor.png (hot desk and
# call shown) and monitor-after.png; ctid's log: target/browser/ctid.log. Exit 0 when it passed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. .ci/demo.sh

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
start_demo browser "$bin/ctid" "$log"
url="$demo_url"
http="http${url#ws}"
http="${http%/ws}"
echo "browser: ctid --demo at $http"

status=0
CTID_HTTP="$http" CTICTL="$(cd "$bin" && pwd)/ctictl" SHOT_DIR="$root/$out" \
  node tests/browser/monitor.test.mjs || status=$?
[ "$status" -eq 0 ] || demo_failed browser "$log"
exit "$status"
