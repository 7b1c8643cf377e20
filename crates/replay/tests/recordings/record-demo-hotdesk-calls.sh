#!/usr/bin/env bash
# Record demo-hotdesk-calls.jsonl again (README.md here lists the steps): run after an intended
# change of the engine's outputs, from the repository root, with the binaries built
# (`cargo build --bins`). BIN selects the build directory (default target/debug).
set -euo pipefail
BIN=${BIN:-target/debug}
OUT=${1:-crates/replay/tests/recordings/demo-hotdesk-calls.jsonl}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

"$BIN/ctid" --demo --listen 127.0.0.1:0 --record-inputs "$WORK/rec.jsonl" >"$WORK/demo.out" 2>"$WORK/demo.err" &
CTID=$!
deadline=$((SECONDS + 60))
until grep -q "control API" "$WORK/demo.out" 2>/dev/null; do
  ((SECONDS < deadline)) || { cat "$WORK/demo.err"; echo "ctid --demo did not start" >&2; exit 1; }
  sleep 0.2
done
URL=$(sed -n 's/.*clients connect to \(ws[^ ]*\).*/\1/p' "$WORK/demo.out")
SIM=$(sed -n 's/.*control API: \(http:[^ ]*\)\/ .*/\1/p' "$WORK/demo.out")
HTTP=${URL#ws://}; HTTP=http://${HTTP%/ws}
ctl() { "$BIN/ctictl" --server "$URL" "$@" >>"$WORK/ctl.out"; }
sim() { curl -sf -X POST "$SIM$1" ${2:+-d "$2"} >/dev/null; }
# answer at phone $1 once it rings (ctictl waits for the consulted party in the background)
answer_when_ringing() {
  local d=$((SECONDS + 15))
  until sim "/phones/$1/answer"; do
    ((SECONDS < d)) || { echo "$1 never rang" >&2; exit 1; }
    sleep 0.1
  done
}
ready() {
  local d=$((SECONDS + 30))
  until curl -sf "$HTTP/readyz" >/dev/null; do
    ((SECONDS < d)) || { echo "ctid never became ready" >&2; exit 1; }
    sleep 0.2
  done
}
ready

# 1. a client that receives the events of these DNs all along
"$BIN/ctictl" --server "$URL" --timeout 600 watch 1001 1002 1003 1004 2001 2002 3001 >"$WORK/watch.out" &
WATCH=$!
d=$((SECONDS + 30))
until [ "$(grep -c EventRegistered "$WORK/watch.out" 2>/dev/null || true)" -ge 7 ]; do
  ((SECONDS < d)) || { echo "watch did not register" >&2; exit 1; }
  sleep 0.2
done
# 2. hot desking by the desktop
ctl register 2010
ctl hotdesk initiate --guest 2001 --host 1001
ctl hotdesk cancel --guest 2001
# 3. at the desk
sim /phones/1003/hotdesk '{"guest":"2003"}'
sim /phones/1003/hotdesk '{}'
# 4. a call, hold, retrieve, user data
ctl call make 1001 1002
ctl call answer 1002
ctl call hold 1001
ctl call retrieve 1001
ctl userdata attach 1001 --set Case=42
ctl userdata update 1001 --set Case=43
# 5. transfer, conference, releases
ctl call transfer 1001 --to 1003 &
answer_when_ringing 1003
wait $!
ctl call conference 1002 --to 1004 &
answer_when_ringing 1004
wait $!
ctl call release 1002
ctl call release 1003
# 6. an agent and an ACD call
ctl agent login --dn 2002 --agent 2002 --queue 3001
ctl agent ready --dn 2002
ctl call make 1006 3001
ctl call answer 2002
ctl call release 2002
ctl agent notready --dn 2002 --acw
ctl agent notready --dn 2002
ctl agent logout --dn 2002
# 7. errors: a switch refusal, a bad DN, a request the switch never answers
sim /faults/fail-next '{"family":"operation","value":"invalidDeviceID","service":"MakeCall"}'
ctl call make 1007 1008 || true
ctl call make 1007 "10 08" || true
sim /faults/stall '{"on":true}'
"$BIN/ctictl" --server "$URL" --timeout 15 call make 1007 1008 >>"$WORK/ctl.out" || true
sim /faults/stall '{"on":false}'
# 8. the link drops: reconnect, re-monitoring and resync, then a call
sim /faults/drop
d=$((SECONDS + 10))
while curl -sf "$HTTP/readyz" >/dev/null; do
  ((SECONDS < d)) || break
  sleep 0.05
done
ready
ctl call make 1005 1006
sim /phones/1006/answer
ctl call release 1005
# 9. stop
kill "$WATCH" 2>/dev/null || true
kill -TERM "$CTID"
wait "$CTID" || true
grep -q '"ErrorCode":57' "$WORK/rec.jsonl" || { echo "no EventError 57 recorded" >&2; exit 1; }
cp "$WORK/rec.jsonl" "$OUT"
"$BIN/ctid-replay" "$OUT"
