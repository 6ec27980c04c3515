#!/usr/bin/env bash
# Fuzzes both HTTP listeners against their description, docs/openapi.yaml,
# with schemathesis: `paysettle serve` on the embedded queue with a fresh
# ledger in a temporary directory, then one schemathesis run per listener.
# Fails on any 5xx, on any status, content type, header or body the
# description does not allow, and on a panic in the server's log.
# `make api-fuzz` runs this.
#
#   API_FUZZ_SECONDS=60    time budget per listener (default 60)
#   API_FUZZ_VENV=dir      where schemathesis is installed (default
#                          ~/.cache/paysettle-api-fuzz; created when missing)
#   API_FUZZ_SEED=n        schemathesis seed, to replay a run
set -euo pipefail

cd "$(dirname "$0")/.."
root="$(pwd)"
seconds="${API_FUZZ_SECONDS:-60}"
venv="${API_FUZZ_VENV:-$HOME/.cache/paysettle-api-fuzz}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

if [[ ! -x "$venv/bin/st" ]]; then
    echo "api-fuzz: installing schemathesis into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis>=4,<5"
fi
"$venv/bin/st" --version

echo "api-fuzz: building paysettle"
cargo build --quiet --bin paysettle
binary="$target_dir/debug/paysettle"

work="$(mktemp -d)"
server=""
cleanup() {
    if [[ -n "$server" ]] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
receiver_port="$(free_port)"
shop_port="$(free_port)"
token="api-fuzz-token-$RANDOM$RANDOM"
paysys_user="api-fuzz-vendor"
paysys_password="api-fuzz-vendor-secret"

cat >"$work/paysettle.toml" <<EOF
[ledger]
path = "$work/ledger.sqlite"
synchronous = "normal"

[queue]
backend = "embedded"
embedded_path = "$work/queue.sqlite"
spool_path = "$work/spool.sqlite"

[receiver]
listen = "127.0.0.1:$receiver_port"
header_timeout_ms = 5000
body_timeout_ms = 5000

[shop_api]
listen = "127.0.0.1:$shop_port"
token = "$token"

[metrics]
listen = ""

[log]
level = "warn"

[portmanat.default]
# Nothing listens here: status checks fail and are retried, which the
# listeners must not notice.
base_url = "http://127.0.0.1:9/portmanat"
result_page = "https://shop.example/portmanat/result"

[paysys.default]
gateway_url = "http://127.0.0.1:9/paysys/gateway"
service_id = "2001"
secret_key = "api-fuzz-paysys-secret"

[[paysys.default.notify_credentials]]
user = "$paysys_user"
password = "$paysys_password"

[plutu.default]
secret_key = "sk_api_fuzz_plutu_secret"
result_page = "https://shop.example/plutu/result"
EOF

"$binary" serve --config "$work/paysettle.toml" >"$work/serve.log" 2>&1 &
server=$!

wait_healthy() {
    for _ in $(seq 1 200); do
        if curl -fsS "http://127.0.0.1:$1/healthz" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$server" 2>/dev/null; then
            echo "api-fuzz: paysettle exited:" >&2
            cat "$work/serve.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "api-fuzz: 127.0.0.1:$1 never became healthy" >&2
    return 1
}
wait_healthy "$receiver_port"
wait_healthy "$shop_port"

checks="not_a_server_error,negative_data_rejection,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance"
common=(
    run "$root/docs/openapi.yaml"
    --checks "$checks"
    --max-time "$seconds"
    --max-redirects 0
    --request-timeout 10
    --workers 1
    --generation-database none
    --no-color
)
if [[ -n "${API_FUZZ_SEED:-}" ]]; then
    common+=(--seed "$API_FUZZ_SEED")
fi

failed=0
# schemathesis writes its own files into the working directory.
cd "$work"
echo "api-fuzz: the callback listener (127.0.0.1:$receiver_port), ${seconds}s"
"$venv/bin/st" "${common[@]}" --url "http://127.0.0.1:$receiver_port" \
    --include-tag callbacks --auth "$paysys_user:$paysys_password" || failed=1
echo "api-fuzz: the shop API (127.0.0.1:$shop_port), ${seconds}s"
"$venv/bin/st" "${common[@]}" --url "http://127.0.0.1:$shop_port" \
    --include-tag shop --header "Authorization: Bearer $token" || failed=1
cd "$root"

if ! kill -0 "$server" 2>/dev/null; then
    echo "api-fuzz: paysettle died during the run:" >&2
    cat "$work/serve.log" >&2
    failed=1
fi
if grep -q "panicked" "$work/serve.log"; then
    echo "api-fuzz: a panic in paysettle's log:" >&2
    grep -B2 -A10 "panicked" "$work/serve.log" >&2
    failed=1
fi
kill -TERM "$server"
status=0
wait "$server" || status=$?
server=""
if [[ "$status" -ne 0 ]]; then
    echo "api-fuzz: paysettle exited with $status on SIGTERM" >&2
    tail -n 20 "$work/serve.log" >&2
    failed=1
fi

if [[ "$failed" -ne 0 ]]; then
    echo "api-fuzz: FAILED" >&2
    exit 1
fi
echo "api-fuzz: no server error and no answer outside docs/openapi.yaml"
