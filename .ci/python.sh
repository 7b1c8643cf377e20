#!/usr/bin/env bash
# Python client (clients/python, package ctid-client): a venv under target/ with the pinned
# packages of clients/python/requirements-dev.txt, the package installed editable, the generated
# ctid_client/messages.py checked against docs/asyncapi.yaml, then pytest against a real
# `ctid --demo` that the tests start themselves (CTID_BIN; its logs: target/python/ctid-*.log).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

venv=target/pyvenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r clients/python/requirements-dev.txt
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-build-isolation -e clients/python

echo "python: generated messages up to date"
"$venv/bin/python" clients/python/scripts/gen_messages.py --check

cargo build -q --bin ctid
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
export CTID_BIN="$target_dir/debug/ctid"

echo "== python client: pytest (clients/python) against ctid --demo"
cd clients/python
"$root/$venv/bin/python" -m pytest -q -p no:cacheprovider
