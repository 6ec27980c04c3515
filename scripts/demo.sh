#!/usr/bin/env bash
# The demo behind `make run`: paysettle serve on its embedded defaults
# (embedded queue, ledger in ./paysettle-data, callbacks on 127.0.0.1:8080,
# the shop API on 127.0.0.1:8081), then, once it is ready, the provider
# simulator playing all three providers (creating payments on autopilot).
#
# The screen tells the story: one line per settlement, read from paysettle's
# event feed as finance would read it, a summary every few seconds, and
# paysettle's own warnings and start/stop lines. Ctrl-C (or q) stops both
# and shows paysettle's shutdown; the demo then exits 0.
#
# Each run starts on a fresh ./paysettle-data (the last run's is moved to
# ./paysettle-data.previous): the simulator numbers its payments from
# auto-000001 every time, and an old ledger would take them for the last
# run's payments with other amounts.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PAYSETTLE_BIN:-target/release/paysettle}
sim_bin=${PAYSETTLE_SIM_BIN:-target/release/paysettle-sim}
rate=${DEMO_RATE:-1}
summary_every=${DEMO_SUMMARY_SECONDS:-10}
data=paysettle-data
shop=http://127.0.0.1:8081
receiver=http://127.0.0.1:8080

for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "demo: needs $tool (apt-get install $tool)" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "demo: $bin is not built (make run builds it)" >&2; exit 2; }

rm -rf "$data.previous"
[ -e "$data" ] && mv "$data" "$data.previous"
mkdir -p "$data"

pay_pid= sim_pid= follow_pid= tty_saved=
restore_tty() { if [ -n "$tty_saved" ]; then stty "$tty_saved" </dev/tty 2>/dev/null || true; tty_saved=; fi; }
stop() {
  local code=${1:-0}
  trap - INT TERM
  restore_tty
  echo "demo: stopping"
  # The simulator first, so no callback meets a paysettle that is going.
  [ -n "$sim_pid" ] && { kill -INT "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; }
  [ -n "$follow_pid" ] && { kill "$follow_pid" 2>/dev/null || true; wait "$follow_pid" 2>/dev/null || true; }
  [ -n "$pay_pid" ] && { kill -INT "$pay_pid" 2>/dev/null || true; wait "$pay_pid" 2>/dev/null || true; }
  exit "$code"
}
trap stop INT TERM
trap restore_tty EXIT

# paysettle's log: its warnings and errors, and its own start and stop
# lines; the rest (every request, every check) goes to $data/paysettle.log.
# The filters ignore Ctrl-C, so paysettle's shutdown lines still get through.
"$bin" serve --config deploy/demo.toml > >(
  trap '' INT
  tee "$data/paysettle.log" |
    grep --line-buffered -E ' (WARN|ERROR) | INFO (receiver listening listen=|worker starting|stopping|stopped)' |
    sed -u 's/^/[paysettle] /'
) 2>&1 &
pay_pid=$!

ready=
for _ in $(seq 1 300); do
  kill -0 "$pay_pid" 2>/dev/null || { echo "demo: paysettle stopped at start (see above)" >&2; exit 1; }
  if curl -sf "$receiver/readyz" >/dev/null && curl -sf "$shop/healthz" >/dev/null; then ready=1; break; fi
  sleep 0.1
done
[ -n "$ready" ] || { echo "demo: paysettle was not ready within 30 s" >&2; stop 1; }

# --- the simulator, its own binary (the product carries none of it) ---
"$sim_bin" --autopilot-rate "$rate" > >(trap '' INT; tee "$data/sim.log" | grep --line-buffered -E ' (WARN|ERROR) ' | sed -u 's/^/[sim] /') 2>&1 &
sim_pid=$!

# One line per event on the feed, and a summary every $summary_every seconds.
line='
  def money($a; $c):
    if $a == null then "?" else
      ({"LYD": 3}[$c] // 2) as $e | ($a | tostring) as $s
      | ((if ($e + 1 - ($s | length)) > 0 then "0" * ($e + 1 - ($s | length)) else "" end) + $s)
      | .[0:length - $e] + "." + .[length - $e:] + " " + $c
    end;
  def pad($n): (. + "            ")[0:$n];
  .events[]
  | if .type == "payment.mismatch" or .type == "payment.conflict" then
      "[settle] \(.provider | pad(9)) \(.reference | pad(13)) FLAGGED     \(.mismatch // .flag // "mismatch"): paid \(money(.amount; .currency)), expected \(money(.expected_amount; .expected_currency)) · event \(.type) published"
    else
      "[settle] \(.provider | pad(9)) \(.reference | pad(13)) \(.status | pad(11)) \(money(.amount; .currency) | pad(14)) · event \(.type) published (\(.source))"
    end'
summary='
  (map(select(.type != "payment.mismatch" and .type != "payment.conflict"))
   | group_by(.provider + "/" + .reference) | map(max_by(.ledger_version))
   | group_by(.provider)
   | map("\(.[0].provider) " + (group_by(.status) | map("\(length) \(.[0].status)") | join(", ")))
   | join(" · ")) as $settled
  | (map(select(.type == "payment.mismatch" or .type == "payment.conflict")) | length) as $flagged
  | "[summary] settled: \(if $settled == "" then "none yet" else $settled end) | pending \($pending) | flagged \($flagged) | events published \(length)"'
follow() {
  local after= page next=$((SECONDS + summary_every)) pending
  : > "$data/events.jsonl"
  while :; do
    if page=$(curl -sf "$shop/v1/events?limit=100&wait=2${after:+&after=$after}"); then
      jq -r "$line" <<<"$page" || true
      jq -c '.events[]' <<<"$page" >> "$data/events.jsonl" || true
      after=$(jq -r '.next' <<<"$page") || after=
    else
      sleep 1
    fi
    if [ "$SECONDS" -ge "$next" ]; then
      next=$((SECONDS + summary_every))
      pending=$(curl -sf "$shop/v1/payments?status=created,pending&limit=1000" | jq '.payments | length' || echo "?")
      jq -rs --arg pending "$pending" "$summary" "$data/events.jsonl" || true
    fi
  done
}
follow &
follow_pid=$!

echo "demo: paysettle is settling what the simulated Portmanat, PaySys and Plutu report (data in ./$data)."
echo "demo: each [settle] line is an event on the feed finance reads: curl -s '$shop/v1/events'. Ctrl-C (or q) stops."

if [ -t 0 ] && tty_saved=$(stty -g </dev/tty 2>/dev/null); then
  # Ctrl-C read as a key, not a signal: `make run` then sees the demo end
  # normally (exit 0) instead of being interrupted itself.
  stty -isig -icanon -echo min 0 time 10 </dev/tty
  while kill -0 "$pay_pid" 2>/dev/null; do
    key=$(dd bs=1 count=1 </dev/tty 2>/dev/null | od -An -c | tr -d ' ') || key=
    case "$key" in '003' | q | Q) stop ;; esac
  done
else
  # A trapped signal ends `wait` at once and runs `stop`. A Ctrl-C sent to
  # the whole process group reaches paysettle too, which then stops cleanly
  # (exit 0) on its own, sometimes before this script's trap runs.
  status=0
  wait "$pay_pid" || status=$?
  [ "$status" -eq 0 ] && stop 0
fi
echo "demo: paysettle stopped on its own (see above)" >&2
stop 1
