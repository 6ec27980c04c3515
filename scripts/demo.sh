#!/usr/bin/env bash
# The demo behind `make run`: the provider simulator plays all three providers
# (creating payments on autopilot), and paysettle serve settles them on its
# embedded defaults (embedded queue, ledger in ./paysettle-data, callbacks on
# 127.0.0.1:8080, the shop API on 127.0.0.1:8081). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PAYSETTLE_BIN:-target/release/paysettle}
sim_bin=${PAYSETTLE_SIM_BIN:-target/release/paysettle-sim}
rate=${DEMO_RATE:-1}

sim_pid=
stop() {
  trap - INT TERM EXIT
  if [ -n "$sim_pid" ]; then kill -INT "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; fi
}
trap stop INT TERM EXIT

"$sim_bin" --autopilot-rate "$rate" 2>&1 | sed -u 's/^/[sim]  /' &
sim_pid=$!
# The simulator answers its control API once it listens.
for _ in $(seq 1 50); do
  (exec 3<>/dev/tcp/127.0.0.1/8090) 2>/dev/null && break
  sleep 0.1
done
echo "demo: the simulator plays Portmanat, PaySys and Plutu on 127.0.0.1:8090; paysettle settles what they report. Ctrl-C stops."
"$bin" serve --config deploy/demo.toml 2>&1 | sed -u 's/^/[paysettle]  /'
