#!/usr/bin/env bash
# The crate walls of ../shared/STYLE.md that deny.toml cannot express.
#
# Which crates may use rusqlite, paysettle-sqlite, lapin (and any other
# walled library) is declared once, in deny.toml's `[bans] deny` entries with
# `wrappers`, and checked by `cargo deny` (scripts/deny.sh); one TLS crypto
# provider is banned there too. This script keeps no second list: it reads
# the walled crates from deny.toml and checks only what `wrappers` cannot say:
# - core does no I/O: no walled crate, and no runtime, HTTP stack or client,
#   anywhere in its dependency tree (not only as a direct dependency);
# - the product binary does not link the simulator (its code forges
#   callbacks); `paysettle-sim` is its own binary, a dev-dependency only.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0

# Every `{ crate = "NAME", wrappers = [...] }` entry of deny.toml.
walled=$(sed -n 's/^[[:space:]]*{[[:space:]]*crate[[:space:]]*=[[:space:]]*"\([^"]*\)".*wrappers.*/\1/p' deny.toml | sort -u)
if [ -z "$walled" ]; then
  echo "walls: no crate with \`wrappers\` found in deny.toml; the walls are declared there" >&2
  exit 1
fi

# What core may never reach, however deep: the walled crates, and the
# libraries that do I/O for the crates above it.
core_banned="$walled tokio hyper reqwest"
core_deps=$(cargo tree -p paysettle-core -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
for banned in $core_banned; do
  if grep -qx "$banned" <<<"$core_deps"; then
    echo "walls: paysettle-core depends on $banned; core must do no I/O" >&2
    fail=1
  fi
done

binary_deps=$(cargo tree -p paysettle -e normal --prefix none --format '{p}' | awk '{print $1}' | sort -u)
if grep -qx paysettle-sim <<<"$binary_deps"; then
  echo "walls: the paysettle binary links paysettle-sim; the simulator is its own binary" >&2
  fail=1
fi

exit $fail
