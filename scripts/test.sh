#!/usr/bin/env bash
# Run every test: unit tests and the integration suite against real SoftHSM2 tokens (one per
# test) and a real Postgres (one database per test), plus the aws CLI walk-through.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check_no_secrets_tracked
ensure_tools
ensure_browser
ensure_postgres
mkdir -p "$DEV_DIR"
ensure_aws_cli

# Databases left behind by an interrupted run.
for db in $(psql "$PG_BASE/postgres" -qXtAc "SELECT datname FROM pg_database WHERE datname LIKE 'kms\_t\_%'"); do
    psql "$PG_BASE/postgres" -qXc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
done

export KMS_TEST_DATABASE_URL="$PG_BASE"
export KMS_TEST_REQUIRE_AWS_CLI=1
export KMS_TEST_REQUIRE_BROWSER=1
# Four tests at a time on two cores: each waits on its own server, token and database much of
# the time (one integration pass here: 260 s with four threads, the CPU 96 % busy; 318 to
# 500 s with two in CI runs).
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"
cd "$ROOT"
log "building the test suite"
cargo test --all-targets --no-run "$@"
log "building the previous release's binary (scripts/previous-release) for the rolling-upgrade test"
build_previous_release "$@"
log "building hsm/latency-shim (a token that is slow to generate key pairs, for the fault tests)"
CARGO_TARGET_DIR="$ROOT/target/latency-shim" cargo build -q --manifest-path "$ROOT/hsm/latency-shim/Cargo.toml"
# The fuzz targets build at the lowest priority while the integration tests run (those mostly
# wait on their servers), so the short fuzz run below starts at once.
ensure_cargo_fuzz
fuzz_log="$(mktemp)"
(cd "$ROOT/fuzz" && nice -n 19 cargo fuzz build --dev -s none >"$fuzz_log" 2>&1) &
fuzz_build=$!
# Kryoptic builds (once per machine) beside the first run too.
kryoptic_log="$(mktemp)"
(nice -n 19 bash -c "source '$ROOT/scripts/lib.sh' && ensure_kryoptic" >"$kryoptic_log" 2>&1) &
kryoptic_build=$!
# Tests that skip on one token say why here.
export KMS_TEST_SKIPS="$(mktemp)"
log "running the test suite (SoftHSM2, Postgres)"
cargo test --all-targets "$@"
log "waiting for the Kryoptic module to build"
wait "$kryoptic_build" || { tail -40 "$kryoptic_log"; die "Kryoptic does not build"; }
log "running the integration suite again on a second PKCS#11 implementation (Kryoptic, Postgres)"
KMS_TEST_TOKEN=kryoptic KMS_TEST_KRYOPTIC_MODULE="$KRYOPTIC_MODULE" cargo test --test api "$@"
log "running the integration suite again on the embedded store (SQLite, SoftHSM2)"
KMS_TEST_STORE=sqlite cargo test --test api "$@"
if [ -s "$KMS_TEST_SKIPS" ]; then
    log "skipped on one token or store, with the reason:"
    sort "$KMS_TEST_SKIPS" >&2
fi
log "waiting for the fuzz targets to build"
wait "$fuzz_build" || { grep -v "^ *Compiling" "$fuzz_log" | tail -40; die "the fuzz targets do not build"; }

# A short run of every fuzz target (scripts/fuzz.sh documents the longer run). New inputs
# found here stay out of the committed corpus unless someone commits them.
log "fuzzing: a short run of each target"
KMS_BIN="$ROOT/target/debug/kms" FUZZ_DEV=1 FUZZ_KEEP=0 FUZZ_SECONDS="${FUZZ_SECONDS:-10}" bash "$ROOT/scripts/fuzz.sh"
