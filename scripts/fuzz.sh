#!/usr/bin/env bash
# Fuzz the parsers and decoders a caller (or the database) can feed: the ciphertext blob, the
# policy language, SigV4, every operation's JSON request, and the wrapped-key row.
#
#   scripts/fuzz.sh                 every target for FUZZ_SECONDS (default 20) each
#   scripts/fuzz.sh request 3600    one target for an hour (the documented longer run)
#
# The stateful targets (sigv4, request, key_row) run against a real SoftHSM2 token and a real
# Postgres database made here, like the server. New corpus entries are kept in fuzz/corpus/;
# crashes land in fuzz/artifacts/<target>/ and fail the run. Sanitizers are off (`-s none`) so
# stable Rust builds it; `FUZZ_SANITIZER=address RUSTC_BOOTSTRAP=1` turns AddressSanitizer on.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_tools
ensure_postgres
command -v cargo-fuzz >/dev/null 2>&1 || {
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2 -q
}

targets=(ciphertext policy sigv4 request key_row)
[ $# -ge 1 ] && targets=("$1")
seconds="${2:-${FUZZ_SECONDS:-20}}"
sanitizer="${FUZZ_SANITIZER:-none}"

work="$(mktemp -d)"
label="kms-fuzz"
pin="87654321"
db="kms_fuzz_$$"
cleanup() {
    psql "$PG_BASE/postgres" -qXc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
bash "$ROOT/hsm/softhsm2-init.sh" "$work/softhsm" "$label" "$pin" >/dev/null
ensure_database "$db"

export SOFTHSM2_CONF="$work/softhsm/softhsm2.conf"
export KMS_DATABASE_URL="$PG_BASE/$db"
export KMS_HSM__TOKEN_LABEL="$label"
export KMS_HSM__PIN="$pin"
export KMS_REGIONS="us-east-1"
export KMS_ADMIN_ACCESS_KEY_ID="AKIAFUZZFUZZFUZZFUZZ"
export KMS_ADMIN_SECRET_ACCESS_KEY="fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz"
export RUST_LOG="${RUST_LOG:-error,cryptoki=off}"

cd "$ROOT"
log "building kms and the fuzz targets"
cargo build --bin kms -q
target/debug/kms init >/dev/null
cargo fuzz build -s "$sanitizer" 2>&1 | grep -v "^ *\(Compiling\|Finished\)" >&2 || true
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    log "fuzzing $t for ${seconds}s"
    out="$work/$t.log"
    if ! cargo fuzz run -s "$sanitizer" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=8192 \
        -print_final_stats=1 >"$out" 2>&1; then
        grep -m1 -B2 -A12 "panicked\|ERROR: libFuzzer" "$out" || tail -60 "$out"
        die "fuzz target $t failed; the input is in fuzz/artifacts/$t/"
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out" | grep -o '[0-9]*$' || echo '?')"
    printf '%-10s %8s executions in %ss, no crash, hang or leak\n' "$t" "$runs" "$seconds"
done
