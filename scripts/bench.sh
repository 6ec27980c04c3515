#!/usr/bin/env bash
# Runs every benchmark and writes docs/benchmarks.md: each figure beside the
# ceiling it is measured against, both from this run on this machine.
#   scripts/bench.sh          the full run
#   scripts/bench.sh quick    a short version of each (under two minutes)
# Needs RabbitMQ at 127.0.0.1:5672 (PAYSETTLE_BENCH_AMQP_URL to change it).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-full}
out=${BENCH_OUT:-docs/benchmarks.md}
results=$(mktemp)
trap 'rm -f "$results"' EXIT

if [ "$mode" = quick ]; then
  ledger_n=5000; publish_n=5000; check_secs=3; poll_secs=3; ingest="--seconds 2 --rounds 1"; reconcile_n=3000
else
  ledger_n=50000; publish_n=50000; check_secs=10; poll_secs=10; ingest="--seconds 5 --rounds 3"; reconcile_n=100000
fi

echo "bench: building release binaries" >&2
cargo build --release -q -p paysettle-store -p paysettle-queue -p paysettle-sim -p paysettle-worker -p paysettle-receiver -p paysettle-ops --examples
cargo build --release -q --bin paysettle

run() {
  local name=$1; shift
  echo "bench: $name" >&2
  local line
  if line=$("$@" 2>/dev/null | tail -n 1) && [ -n "$line" ]; then
    printf '%s\t%s\n' "$name" "$line" >>"$results"
  else
    printf '%s\t{"error":"the benchmark failed"}\n' "$name" >>"$results"
  fi
}

run ledger target/release/examples/bench_ledger "$ledger_n"
run publish target/release/examples/bench_publish --messages "$publish_n"
run sim_checks target/release/examples/bench_checks "$check_secs"
run worker target/release/examples/bench_worker "$poll_secs" 50 32
run worker_20ms target/release/examples/bench_worker "$poll_secs" 20 32
run reconcile target/release/examples/bench_reconcile "$reconcile_n" 50 32
# shellcheck disable=SC2086
run ingest target/release/examples/bench_ingest --backend rabbitmq $ingest

mkdir -p "$(dirname "$out")"
python3 scripts/bench_report.py "$results" "$mode" >"$out"
echo "bench: wrote $out" >&2
cat "$out"
