#!/usr/bin/env bash
# The benchmark, one command: `bash bench/run.sh [--duration S] [--scale 4,5,6,7]`.
# Builds the server with the `profiling` profile (the release build plus debug
# info, so `perf` can attribute samples; target/profiling/), raises the
# open-file limit (10,000 idle connections are measured), then runs
# memcached-lite, a real memcached and redis-server side by side on loopback
# (bench/run.py) and writes
# bench/results.md, bench/results.json and bench/results.svg. The replicated
# group's workloads (bench/cluster.py: a 3-node group vs a single node and vs
# etcd) run last; `--only-cluster` runs just those (a few minutes) and merges
# them into the results files, `--no-cluster` skips them.
# Takes about 15 minutes on 2 cores (the replicated group and the watch
# workloads included; `--only-cluster`, `--only-watch` run one part).
# Not part of tests/run-all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in memcached redis-server memcaslap; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install memcached redis-server libmemcached-tools" >&2; exit 1; }
done
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check matplotlib \
  || echo "matplotlib unavailable: no chart" >&2
case " $* " in *" --no-cluster "*) ;; *)
  for tool in wrk etcd; do
    command -v "$tool" >/dev/null || { echo "missing $tool (the replicated group's workloads): apt-get install wrk etcd-server" >&2; exit 1; }
  done;;
esac
cargo build --profile profiling --quiet
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ "${1:-}" == "--only-watch" ]]; then
  # Writes with 100 idle watchers vs none (bench/watch.py), alone.
  shift
  MEMCACHED_LITE_BIN="${CARGO_TARGET_DIR:-target}/profiling/memcached-lite" exec python3 bench/watch.py "$@"
fi
# The change feed's section of bench/results.md (appended by bench/watch.py
# after a full run): run.py rewrites the file without it, so a partial run
# puts the last one back.
watch_section=""
case " $* " in *" --only-"*|*" --render-only "*)
  watch_section="$(sed -n '/^## Writes with [0-9]* idle watchers/,$p' bench/results.md 2>/dev/null || true)";;
esac
python3 bench/run.py "$@"
# The change feed's cost, appended to bench/results.md unless only one
# part of the harness ran.
case " $* " in
  *" --only-"*|*" --render-only "*)
    if [[ -n "$watch_section" ]] && ! grep -q '^## Writes with [0-9]* idle watchers' bench/results.md; then
      printf '\n%s\n' "$watch_section" >> bench/results.md
    fi;;
  *) MEMCACHED_LITE_BIN="${CARGO_TARGET_DIR:-target}/profiling/memcached-lite" \
       python3 bench/watch.py --markdown bench/results.md --json bench/watch.json ;;
esac
