#!/usr/bin/env bash
# cargo deny (deny.toml): bans, licences and sources always; advisories
# against the RustSec database, fetched when it can be. Without network
# beyond the package registries the database may be unreachable: then a copy
# fetched before is used (and said so), and with none the advisories check
# is skipped with a visible line, never silently.
set -euo pipefail
cd "$(dirname "$0")/.."

# `make test` works on a fresh machine: the tool comes from crates.io once.
if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "deny: cargo-deny is not installed; installing it once (cargo install --locked cargo-deny)" >&2
  cargo install --locked cargo-deny
fi

cargo deny --log-level error check bans licenses sources

dbs=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs
fetched_copy() { compgen -G "$dbs/*/crates" >/dev/null; }
if timeout 120 cargo deny --log-level error fetch db >/dev/null 2>&1; then
  cargo deny --log-level error --offline check advisories
elif fetched_copy; then
  echo "deny: the advisory database could not be fetched; checking against the copy fetched before" >&2
  cargo deny --log-level error --offline check advisories
else
  echo "deny: SKIPPED the advisories check: the RustSec database could not be fetched (no network?) and no copy is here" >&2
fi
