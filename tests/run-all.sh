#!/usr/bin/env bash
# The whole test suite: installs what the real-client tests need on a fresh
# Debian machine, then runs the Rust tests (unit + integration against the
# real binary) and the real-client tests (pymemcache, libmemcached, the
# documentation's console examples, ...). Exits non-zero on any failure.
# Takes about 9-10 minutes on 2 cores from a fresh clone, including a build of
# about 3 minutes (about 6.5 minutes once built).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# cargo's progress bar is for terminals; keep its "Compiling x" lines.
export CARGO_TERM_PROGRESS_WHEN=never

START=$SECONDS
stage() {
  local t=$((SECONDS - START))
  printf '== [%d:%02d] %s\n' $((t / 60)) $((t % 60)) "$*"
}

need_apt=()
command -v memcached >/dev/null || need_apt+=(memcached)
command -v memccapable >/dev/null || need_apt+=(libmemcached-tools)
command -v nutcracker >/dev/null || need_apt+=(nutcracker)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(nodejs npm)
command -v nc >/dev/null || need_apt+=(netcat-openbsd)   # the docs' console examples
command -v curl >/dev/null || need_apt+=(curl)
command -v ss >/dev/null || need_apt+=(iproute2)      # listen backlog checks
command -v strace >/dev/null || need_apt+=(strace)     # fdatasyncs per acknowledged write (tests/crash.rs)
if ((${#need_apt[@]})); then
  stage "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
stage "installing Python test clients (tests/clients/requirements.txt)"
python3 -m pip install -q --disable-pip-version-check -r tests/clients/requirements.txt

stage "installing the browser test driver (playwright-core; Chromium comes from Debian)"
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)

stage "building (about 3 minutes on 2 cores from scratch)"
cargo build --all-targets

stage "Rust tests (unit + integration against the real binary)"
# Without --quiet each test binary's "Running tests/xyz.rs" line and each
# test's name show as they finish.
cargo test -- --test-threads=2

stage "real-client tests (pymemcache, libmemcached tools, docs examples, Swagger UI in headless Chromium)"
export MEMCACHED_LITE_BIN="$PWD/target/debug/memcached-lite"
python3 -m pytest -v -p no:cacheprovider tests/clients
