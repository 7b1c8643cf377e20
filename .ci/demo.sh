# Sourced by the CI scripts that test against `ctid --demo` (asyncapi.sh, browser.sh,
# typescript.sh). `start_demo NAME CTID LOG` starts CTID --demo on a free port with its log in
# LOG, stops it when the script exits, and returns once the log names the client URL and
# csta-sim's control API, in `demo_url` (ws://127.0.0.1:PORT/ws) and `demo_sim`
# (http://127.0.0.1:PORT); it exits the script with the log if ctid stops or 60 s pass.
# `demo_failed NAME LOG` prints the log's last lines after a failed test.
start_demo() {
  local name="$1" ctid="$2" log="$3"
  RUST_LOG="${RUST_LOG:-info}" "$ctid" --demo --listen 127.0.0.1:0 >"$log" 2>&1 &
  demo_pid=$!
  trap 'kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true' EXIT
  demo_url=""
  demo_sim=""
  local deadline=$((SECONDS + 60))
  while [ "$SECONDS" -lt "$deadline" ]; do
    demo_url="$(grep -o 'ws://127\.0\.0\.1:[0-9]*/ws' "$log" | head -n1 || true)"
    demo_sim="$(grep -o 'control API: http://127\.0\.0\.1:[0-9]*' "$log" | head -n1 | sed 's/^control API: //' || true)"
    if [ -n "$demo_url" ] && [ -n "$demo_sim" ]; then
      return 0
    fi
    if ! kill -0 "$demo_pid" 2>/dev/null; then
      echo "$name: ctid --demo exited"
      cat "$log"
      exit 1
    fi
    sleep 0.1
  done
  echo "$name: ctid --demo did not start within 60 s"
  cat "$log"
  exit 1
}

demo_failed() {
  echo "$1: failed; last lines of $2:"
  tail -n 40 "$2"
}
