#!/usr/bin/env bash
# Times a clean `cargo build --release` of a one-function program on cachier-rs (default
# features, system SQLite, with `async`) and on `cached` (its defaults), each in a fresh target
# directory, one after the other, ROUNDS times (default 2). The README's build-time table.
#
#   scripts/build-time.sh [ROUNDS]
#
# The system-SQLite row links the library scripts/test.sh builds (run that first).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
ROUNDS="${1:-2}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
SQLITE_SYS_VERSION="$(awk '/^name = "libsqlite3-sys"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
SQLITE_LIB_DIR="$HOME/.cache/cachier-rs/libsqlite3/$SQLITE_SYS_VERSION"

program() { # name, dependency line, attribute, use line
  mkdir -p "$WORK/$1/src"
  printf '[package]\nname = "bt-%s"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n%s\n\n[workspace]\n' \
    "$1" "$2" >"$WORK/$1/Cargo.toml"
  printf '%s\n\n%s\nfn slow_square(x: u64) -> u64 {\n    std::thread::sleep(std::time::Duration::from_millis(100));\n    x * x\n}\n\nfn main() {\n    println!("{}", slow_square(12));\n}\n' \
    "$4" "$3" >"$WORK/$1/src/main.rs"
  cp Cargo.lock "$WORK/$1/"   # the versions this workspace is tested with
}
FACADE="package = \"cachier-rs\", path = \"$REPO/crates/facade\""
program cached 'cached = "4.1"' '#[cached(ttl_secs = 3600)]' 'use cached::proc_macro::cached;'
program default "cachier = { $FACADE }" '#[cachier(stale_after = "1h")]' 'use cachier::cachier;'
program system-sqlite "cachier = { $FACADE, default-features = false, features = [\"memory\", \"file\", \"macros\"] }" \
  '#[cachier(stale_after = "1h")]' 'use cachier::cachier;'
program async "cachier = { $FACADE, features = [\"async\"] }" '#[cachier(stale_after = "1h")]' 'use cachier::cachier;'

export CARGO_INCREMENTAL=0
for round in $(seq 1 "$ROUNDS"); do
  for name in cached default system-sqlite async; do
    (
      cd "$WORK/$name"
      unset CARGO_TARGET_DIR
      if [ "$name" = system-sqlite ]; then export SQLITE3_LIB_DIR="$SQLITE_LIB_DIR"; fi
      start=$(date +%s.%N)
      cargo build --release -q
      printf 'round %s  %-14s %6.1f s\n' "$round" "$name" "$(echo "$(date +%s.%N) - $start" | bc)"
    )
  done
done
