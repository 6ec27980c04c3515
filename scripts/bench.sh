#!/usr/bin/env bash
# Runs every benchmark and writes docs/benchmarks.md: each figure beside the
# ceiling it is measured against, both from this run on this machine.
#   scripts/bench.sh          the full run (about five minutes)
#   scripts/bench.sh quick    a short version of each (under two minutes)
#   scripts/bench.sh attack   the "under attack" section alone (issue 17),
#                             written into the existing docs/benchmarks.md
#   scripts/bench.sh ledger-workers
#                             the "shared ledger: 1, 2, 3 workers" section alone
#                             (issue 20), written into the existing docs/benchmarks.md
# Needs RabbitMQ at 127.0.0.1:5672 (PAYSETTLE_BENCH_AMQP_URL to change it) and
# PostgreSQL at 127.0.0.1:5432 (PAYSETTLE_BENCH_POSTGRES, a key-value connection
# string, to change it; the bench creates and drops databases of its own).
# BENCH_OUT names another output file; BENCH_PIN=1 pins the receiver and the
# load generator to different cores (see crates/receiver/examples/bench_ingest.rs).
#
# Reconcile: crates/ops/examples/bench_reconcile runs the real `paysettle
# reconcile` over PAYMENTS payments against the simulator at LATENCY_MS with
# CONCURRENCY checks in flight; its bound is concurrency ÷ latency. When it
# is missing from the workspace the table says "not measured".
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
out=${BENCH_OUT:-docs/benchmarks.md}
bin=${CARGO_TARGET_DIR:-target}/release
examples=$bin/examples
results=$(mktemp)
trap 'rm -f "$results"' EXIT

case "$mode" in
  quick)
    ledger_n=5000; publish_n=5000; check_secs=2; poll_secs=2; relay="5000 1"
    reconcile="3000 50 32"; ingest="--seconds 2 --rounds 1 --startups 3"; attack="--seconds 3"
    ledger_workers="3000 600" ;;
  full)
    ledger_n=50000; publish_n=50000; check_secs=10; poll_secs=10; relay="20000 3"
    reconcile="100000 50 32"; ingest="--seconds 10 --rounds 3 --startups 7"; attack="--seconds 10"
    ledger_workers="20000 4000" ;;
  attack)
    attack="--seconds 5" ;;
  ledger-workers)
    ledger_workers="20000 4000" ;;
  *) echo "usage: $0 [full|quick|attack|ledger-workers]" >&2; exit 2 ;;
esac
pin=()
if [ "${BENCH_PIN:-0}" = 1 ]; then pin=(--pin); fi

started=$(date +%s)
echo "bench: building the release binaries and benchmark examples" >&2
if [ "$mode" = attack ]; then
  cargo build --release -q -p paysettle -p paysettle-loadgen --bins
  cargo build --release -q -p paysettle-receiver --example bench_attack
elif [ "$mode" = ledger-workers ]; then
  cargo build --release -q -p paysettle-store --example bench_ledger_workers
else
  cargo build --release -q --workspace --bins --examples
fi

run() {
  local name=$1; shift
  echo "bench: $name" >&2
  local line
  if line=$("$@" | tail -n 1) && [ -n "$line" ]; then
    printf '%s\t%s\n' "$name" "$line" >>"$results"
  else
    printf '%s\t{"error":"the benchmark failed"}\n' "$name" >>"$results"
  fi
}

# Removes a benchmark's RabbitMQ topology, named in its JSON line.
forget_prefix() {
  local prefix
  prefix=$(grep "^$1	" "$results" | sed -n 's/.*"queue_prefix":"\([^"]*\)".*/\1/p' | head -n 1)
  if [ -n "$prefix" ]; then
    "$examples/bench_publish" --delete-prefix "$prefix" >/dev/null 2>&1 || true
  fi
}

# The door under attack: genuine callbacks with and without the attacks of
# tests/hostile/load.rs, in the same run.
attack_run() {
  # shellcheck disable=SC2086
  run attack "$examples/bench_attack" --paysettle "$bin/paysettle" --loadgen "$bin/paysettle-loadgen" $attack
}
if [ "$mode" = attack ]; then
  attack_run
  python3 scripts/bench_report.py "$results" attack-section "$out"
  echo "bench: wrote the attack section of $out in $(($(date +%s) - started)) s" >&2
  grep '^attack' "$results" | cut -f2-
  exit 0
fi

# The shared ledger (issue 20): applies/s and checks/s with 1, 2 and 3 workers
# on PostgreSQL beside raw inserts into the same server, and SQLite beside it.
ledger_workers_run() {
  # shellcheck disable=SC2086
  run ledger_workers "$examples/bench_ledger_workers" $ledger_workers
}
if [ "$mode" = ledger-workers ]; then
  ledger_workers_run
  python3 scripts/bench_report.py "$results" ledger-workers-section "$out"
  echo "bench: wrote the shared ledger section of $out in $(($(date +%s) - started)) s" >&2
  grep '^ledger_workers' "$results" | cut -f2-
  exit 0
fi

run ledger "$examples/bench_ledger" "$ledger_n"
ledger_workers_run
run publish "$examples/bench_publish" --messages "$publish_n"
run sim_checks "$examples/bench_checks" "$check_secs"
run worker "$examples/bench_worker" "$poll_secs" 50 32
run worker_20ms "$examples/bench_worker" "$poll_secs" 20 32
# shellcheck disable=SC2086
run relay "$examples/bench_relay" $relay
forget_prefix relay
if [ -x "$examples/bench_reconcile" ]; then
  # shellcheck disable=SC2086
  run reconcile "$examples/bench_reconcile" $reconcile
fi
# shellcheck disable=SC2086
run ingest "$examples/bench_ingest" --paysettle "$bin/paysettle" --loadgen "$bin/paysettle-loadgen" \
  --publish "$examples/bench_publish" $ingest "${pin[@]}"

attack_run

printf 'meta\t{"seconds":%s}\n' "$(($(date +%s) - started))" >>"$results"
mkdir -p "$(dirname "$out")"
python3 scripts/bench_report.py "$results" "$mode" >"$out"
echo "bench: wrote $out in $(($(date +%s) - started)) s" >&2
cat "$out"
