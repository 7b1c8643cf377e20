#!/usr/bin/env bash
# Checks docs/asyncapi.yaml (tests/asyncapi/check.mjs): @asyncapi/parser validation, every message
# example of docs/protocol.md, and every event of an end-to-end run against `ctid --demo`.
# ctid's log: target/asyncapi/ctid.log. Exit 0 when it passed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. .ci/demo.sh
echo "== AsyncAPI document: @asyncapi/parser, protocol.md examples, an end-to-end run against ctid --demo"

(cd tests/asyncapi && npm ci --no-audit --no-fund --loglevel=error)
cargo build -q --bin ctid
bin="${CARGO_TARGET_DIR:-target}/debug"

out=target/asyncapi
mkdir -p "$out"
log="$out/ctid.log"
start_demo asyncapi "$bin/ctid" "$log"
url="$demo_url"
sim="$demo_sim"
echo "asyncapi: ctid --demo at $url, csta-sim control API at $sim"

status=0
CTID_WS="$url" CSTA_SIM="$sim" node tests/asyncapi/check.mjs || status=$?
[ "$status" -eq 0 ] || demo_failed asyncapi "$log"
exit "$status"
