#!/usr/bin/env bash
# The long chaos soak (`make soak`): ten minutes of payments across the three
# simulated providers with lost, duplicated, delayed, out-of-order, wrongly
# signed and forged callbacks, provider errors and 429s, while the harness
# SIGKILLs the worker and the receiver, cuts their broker connection and, when
# allowed, restarts RabbitMQ. Then the invariant checker compares the
# simulator's truth, the ledger and finance's events, prints its counts and
# fails on any lost, duplicated or wrong finding. See tests/soak/main.rs.
#
#   PAYSETTLE_SOAK_SECS=600            how long traffic and chaos last
#   PAYSETTLE_SOAK_REPLICAS=1          `work` processes; more than one run
#                                      on one PostgreSQL ledger (a database
#                                      of the run's own on 127.0.0.1:5432,
#                                      dropped after) and the checker adds
#                                      the providers' limits: no overlapping
#                                      checks, the rate kept for all of them
#                                      (`make soak REPLICAS=3`)
#   PAYSETTLE_SOAK_BROKER_RESTART=1    also restart the broker (rabbitmqctl
#                                      stop_app/start_app): disturbs everyone
#                                      else using it, so off unless asked
#   PAYSETTLE_SOAK_RATE=10             payments started per second
#   PAYSETTLE_SOAK_SEED=N              repeat a run's random choices
#   PAYSETTLE_SOAK_REPORT=FILE         where the report goes (default
#                                      soak-report.txt in the target dir)
#   SOAK_CARGO_FLAGS="--release"       extra flags for cargo test
set -euo pipefail
cd "$(dirname "$0")/.."

export PAYSETTLE_SOAK_SECS="${PAYSETTLE_SOAK_SECS:-600}"
export PAYSETTLE_SOAK_BROKER_RESTART="${PAYSETTLE_SOAK_BROKER_RESTART:-0}"
export PAYSETTLE_SOAK_REPLICAS="${PAYSETTLE_SOAK_REPLICAS:-1}"
export PAYSETTLE_SOAK_REPORT="${PAYSETTLE_SOAK_REPORT:-${CARGO_TARGET_DIR:-target}/soak-report.txt}"
mkdir -p "$(dirname "$PAYSETTLE_SOAK_REPORT")"
rm -f "$PAYSETTLE_SOAK_REPORT"

if [[ "$PAYSETTLE_SOAK_REPLICAS" != 1 ]]; then
    command -v psql >/dev/null || {
        echo "soak: PAYSETTLE_SOAK_REPLICAS=$PAYSETTLE_SOAK_REPLICAS needs PostgreSQL's psql (the run makes its own database)" >&2
        exit 2
    }
fi

if [[ "$PAYSETTLE_SOAK_BROKER_RESTART" == 1 ]]; then
    command -v rabbitmqctl >/dev/null || {
        echo "soak: PAYSETTLE_SOAK_BROKER_RESTART=1 needs rabbitmqctl" >&2
        exit 2
    }
    # The harness starts the broker again itself; this covers a harness that
    # was killed outright while the broker was stopped.
    trap 'rabbitmqctl start_app >/dev/null 2>&1 || true' EXIT
fi

echo "soak: ${PAYSETTLE_SOAK_SECS}s of traffic and chaos (workers: ${PAYSETTLE_SOAK_REPLICAS}, broker restarts: ${PAYSETTLE_SOAK_BROKER_RESTART})"
status=0
# shellcheck disable=SC2086 # SOAK_CARGO_FLAGS is a list of flags
"${CARGO:-cargo}" test --test soak ${SOAK_CARGO_FLAGS:-} -- --nocapture || status=$?
if [[ -f "$PAYSETTLE_SOAK_REPORT" ]]; then
    echo "soak: report in $PAYSETTLE_SOAK_REPORT"
fi
exit "$status"
