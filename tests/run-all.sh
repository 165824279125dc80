#!/usr/bin/env bash
# The whole test suite: installs what the real-client tests need on a fresh
# Debian machine, then runs the Rust tests (unit + integration against the
# real binary) and the real-client tests (pymemcache, libmemcached, ...).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

need_apt=()
command -v memcached >/dev/null || need_apt+=(memcached)
command -v memccapable >/dev/null || need_apt+=(libmemcached-tools)
command -v nutcracker >/dev/null || need_apt+=(nutcracker)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(nodejs npm)
if ((${#need_apt[@]})); then
  echo "== installing Debian packages: ${need_apt[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
echo "== installing Python test clients"
python3 -m pip install -q --disable-pip-version-check -r tests/clients/requirements.txt

echo "== installing the browser test driver (playwright-core; Chromium comes from Debian)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

echo "== building"
cargo build --all-targets --quiet

echo "== Rust tests (unit + integration against the real binary)"
cargo test --quiet -- --test-threads=2

echo "== real-client tests (pymemcache, libmemcached tools, Swagger UI in headless Chromium)"
export MEMCACHED_LITE_BIN="$PWD/target/debug/memcached-lite"
python3 -m pytest -q -p no:cacheprovider tests/clients
