#!/usr/bin/env bash
# The one test command (README, .ci/run): makes sure Redis, a Redis Cluster, PostgreSQL, the
# MongoDB-wire test server and the S3 test server run on loopback (installing or starting what is
# missing), exports their URLs, then runs rustfmt, clippy, every test of the workspace and every
# example.
set -euo pipefail
cd "$(dirname "$0")/.."

# One build directory outside the clone, so clippy, tests and examples reuse each other's work
# and later runs start warm.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cachier-rs/target}"
export CARGO_INCREMENTAL=0   # one-shot builds: incremental state only costs disk
export CACHIER_REQUIRE_SERVICES=1
export CARGO_TERM_COLOR=never
STATE_DIR="$HOME/.cache/cachier-rs"
LOG_DIR="$STATE_DIR/logs"
mkdir -p "$LOG_DIR"

step() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port, seconds, what
  for _ in $(seq 1 $(($2 * 10))); do port_open "$1" && return 0; sleep 0.1; done
  echo "$3 did not open 127.0.0.1:$1 within $2 s" >&2
  return 1
}
APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The servers this script starts, stopped when it exits (and only those).
CLUSTER_DIR=""
MONGO_PID=""
S3_PID=""
stop_started() {
  if [ -n "$CLUSTER_DIR" ]; then scripts/redis-cluster.sh stop "$CLUSTER_DIR" || true; fi
  for pid in "$MONGO_PID" "$S3_PID"; do
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
}
trap stop_started EXIT

# --- Redis ------------------------------------------------------------------------------------
step "Redis"
if ! port_open 6379; then
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --logfile "$LOG_DIR/redis.log" --dir "$STATE_DIR"
  wait_port 6379 10 redis-server
fi
command -v redis-server >/dev/null || apt_install redis-server   # the fault tests start private servers
command -v openssl >/dev/null || apt_install openssl              # the rediss:// test makes a certificate
export CACHIER_TEST_REDIS_URL="${CACHIER_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"

# --- Redis Cluster (three primaries, three replicas) ------------------------------------------
step "Redis Cluster"
if [ -z "${CACHIER_TEST_REDIS_CLUSTER_URL:-}" ]; then
  command -v redis-cli >/dev/null || apt_install redis-tools
  CLUSTER_DIR="$STATE_DIR/redis-cluster"
  CACHIER_TEST_REDIS_CLUSTER_URL="$(scripts/redis-cluster.sh start "$CLUSTER_DIR")"
fi
export CACHIER_TEST_REDIS_CLUSTER_URL

# --- PostgreSQL -------------------------------------------------------------------------------
step "PostgreSQL"
if ! port_open 5432; then
  command -v pg_ctlcluster >/dev/null || apt_install postgresql
  PG_VERSION="$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)"
  if [ -z "$PG_VERSION" ]; then
    PG_VERSION="$(ls /usr/lib/postgresql | sort -n | tail -1)"
    pg_createcluster "$PG_VERSION" main >/dev/null
  fi
  HBA="/etc/postgresql/$PG_VERSION/main/pg_hba.conf"
  grep -q "cachier-tests" "$HBA" || sed -i '1i host all all 127.0.0.1/32 trust # cachier-tests: loopback only' "$HBA"
  pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start
  wait_port 5432 30 PostgreSQL
fi
if command -v psql >/dev/null && ! psql -h 127.0.0.1 -U postgres -tAc "select 1" test >/dev/null 2>&1; then
  su postgres -c "createdb -h 127.0.0.1 test" 2>/dev/null || createdb -h 127.0.0.1 -U postgres test || true
fi
export CACHIER_TEST_POSTGRES_URL="${CACHIER_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"

# --- MongoDB-wire test server (SecantusDB, from PyPI) -----------------------------------------
step "MongoDB-wire server"
MONGO_PORT=27017
MONGO_VENV="$STATE_DIR/secantus-venv"
if [ ! -x "$MONGO_VENV/bin/secantusd-py" ]; then   # the restart test starts private servers too
  python3 -m venv "$MONGO_VENV"
  "$MONGO_VENV/bin/pip" install --quiet --disable-pip-version-check "SecantusDB==0.7.0b3"
fi
export CACHIER_TEST_SECANTUSD="$MONGO_VENV/bin/secantusd-py"
if ! port_open "$MONGO_PORT"; then
  "$MONGO_VENV/bin/secantusd-py" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path :memory: \
    --log-level WARNING >"$LOG_DIR/secantusd.log" 2>&1 &
  MONGO_PID=$!   # stopped on exit by stop_started
  wait_port "$MONGO_PORT" 20 secantusd-py || { cat "$LOG_DIR/secantusd.log"; exit 1; }
fi
export CACHIER_TEST_MONGO_URL="${CACHIER_TEST_MONGO_URL:-mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true}"

# --- S3 test server (moto, from PyPI) ---------------------------------------------------------
step "S3 server"
S3_VENV="$STATE_DIR/moto-venv"
if [ ! -x "$S3_VENV/bin/moto_server" ]; then   # the outage test starts private servers too
  python3 -m venv "$S3_VENV"
  "$S3_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==5.2.5"
fi
export CACHIER_TEST_MOTO_SERVER="$S3_VENV/bin/moto_server"
if [ -z "${CACHIER_TEST_S3_URL:-}" ]; then
  S3_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "$S3_VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$LOG_DIR/moto.log" 2>&1 &
  S3_PID=$!   # stopped on exit by stop_started
  wait_port "$S3_PORT" 30 moto_server || { cat "$LOG_DIR/moto.log"; exit 1; }
  # moto accepts any credentials; the bucket is the tests' (the backend creates none).
  python3 -c 'import sys, urllib.request as r; r.urlopen(r.Request(sys.argv[1], method="PUT"))' \
    "http://127.0.0.1:$S3_PORT/cachier-test"
  export CACHIER_TEST_S3_URL="s3://test:test@cachier-test?endpoint=http://127.0.0.1:$S3_PORT&region=us-east-1"
fi

# --- Checks -----------------------------------------------------------------------------------
step "rustfmt"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "tests"
cargo test --workspace --all-features --no-fail-fast

step "the default backend with backends compiled out (the facade's default features)"
cargo test -p cachier-rs --test default_backend --test file_store

step "documentation (every crate, every feature; a warning fails)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --all-features --no-deps

# The `bundled-sqlite` feature off: the system's libsqlite3 is linked instead. The SQLite
# crate needs a newer one than some distributions ship, so this builds a shared library once
# from the SQLite sources the crate carries (kept in the state directory), and points the
# build and the loader at it.
step "system SQLite (default features without bundled-sqlite)"
SQLITE_SYS_VERSION="$(awk '/^name = "libsqlite3-sys"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)"
SQLITE_LIB_DIR="$STATE_DIR/libsqlite3/$SQLITE_SYS_VERSION"
if [ ! -f "$SQLITE_LIB_DIR/libsqlite3.so" ]; then
  SQLITE_SOURCE="$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -path "*/libsqlite3-sys-$SQLITE_SYS_VERSION/sqlite3/sqlite3.c" | head -1)"
  [ -n "$SQLITE_SOURCE" ] || { echo "no sources of libsqlite3-sys $SQLITE_SYS_VERSION" >&2; exit 1; }
  mkdir -p "$SQLITE_LIB_DIR"
  cc -O1 -fPIC -shared -DSQLITE_THREADSAFE=1 -o "$SQLITE_LIB_DIR/libsqlite3.so.tmp" "$SQLITE_SOURCE" -lpthread -ldl -lm
  mv "$SQLITE_LIB_DIR/libsqlite3.so.tmp" "$SQLITE_LIB_DIR/libsqlite3.so"
fi
SQLITE3_LIB_DIR="$SQLITE_LIB_DIR" LD_LIBRARY_PATH="$SQLITE_LIB_DIR" \
  cargo test -p cachier-rs --no-default-features --features memory,file,macros --test default_backend --test file_store
# The test binary must have linked that library, not compiled SQLite in.
SQLITE_TEST_BINARY="$(SQLITE3_LIB_DIR="$SQLITE_LIB_DIR" cargo test -p cachier-rs --no-default-features \
  --features memory,file,macros --test default_backend --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')"
LD_LIBRARY_PATH="$SQLITE_LIB_DIR" ldd "${SQLITE_TEST_BINARY:?no test binary built}" \
  | grep -q "$SQLITE_LIB_DIR/libsqlite3.so" \
  || { echo "$SQLITE_TEST_BINARY does not link $SQLITE_LIB_DIR/libsqlite3.so" >&2; exit 1; }

step "examples"
for example in crates/facade/examples/*.rs; do
  name="$(basename "$example" .rs)"
  echo "--- example $name"
  cargo run -q -p cachier-rs --all-features --example "$name"
done

step "all green"
