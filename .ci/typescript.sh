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
. .ci/demo.sh

cargo build -q --bin ctid
bin="$(cd "${CARGO_TARGET_DIR:-target}/debug" && pwd)"

cd clients/typescript
npm ci --no-audit --no-fund --loglevel=error
npm run -s build
npm run -s check

out="$root/target/typescript"
mkdir -p "$out"
log="$out/ctid.log"
start_demo typescript "$bin/ctid" "$log"
url="$demo_url"
sim="$demo_sim"
echo "typescript: ctid --demo at $url, csta-sim control API at $sim"

status=0
CTID_URL="$url" CSTA_SIM="$sim" CTID_BIN="$bin/ctid" npm test || status=$?
[ "$status" -eq 0 ] || demo_failed typescript "$log"
exit "$status"
