#!/usr/bin/env bash
# The crate walls of ../shared/STYLE.md, enforced: core does no I/O, only the
# store crate touches SQLite and PostgreSQL, only the queue crate touches
# RabbitMQ; the product binary does not link the simulator; one TLS crypto
# provider.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0

core_deps=$(cargo tree -p paysettle-core -e normal --prefix none --format '{p}' 2>/dev/null | awk '{print $1}' | sort -u)
for banned in tokio hyper lapin rusqlite reqwest tokio-postgres; do
  if grep -qx "$banned" <<<"$core_deps"; then
    echo "walls: paysettle-core depends on $banned; core must do no I/O" >&2
    fail=1
  fi
done

# Which workspace crates reach a library directly (depth 1 of the inverted tree).
direct_users() {
  cargo tree --workspace -i "$1" -e normal --depth 1 --prefix none --format '{p}' 2>/dev/null \
    | awk '{print $1}' | grep '^paysettle' | sort -u || true
}
check_only() {
  local lib=$1 allowed=$2 users
  users=$(direct_users "$lib")
  for user in $users; do
    if [ "$user" != "$allowed" ]; then
      echo "walls: $user depends on $lib directly; only $allowed may" >&2
      fail=1
    fi
  done
}
check_only rusqlite paysettle-store
check_only lapin paysettle-queue
check_only tokio-postgres paysettle-store
check_only deadpool-postgres paysettle-store

# The product binary carries no simulator (with its code that forges
# callbacks): `paysettle-sim` is its own binary, a dev-dependency only.
binary_deps=$(cargo tree -p paysettle -e normal --prefix none --format '{p}' 2>/dev/null | awk '{print $1}' | sort -u)
if grep -qx paysettle-sim <<<"$binary_deps"; then
  echo "walls: the paysettle binary links paysettle-sim; the simulator is its own binary" >&2
  fail=1
fi

# One TLS crypto provider: ring (reqwest's); aws-lc would be a second.
if cargo tree --workspace -i aws-lc-rs >/dev/null 2>&1; then
  echo "walls: aws-lc-rs is in the build; every TLS client uses rustls with ring" >&2
  fail=1
fi

exit $fail
