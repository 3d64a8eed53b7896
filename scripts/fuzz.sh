#!/usr/bin/env bash
# Fuzz the parsers and decoders a caller (or the database) can feed: the ciphertext blob, the
# policy language, SigV4, every operation's JSON request, and the wrapped-key row; and the
# sequences an attacker or operator plays: grants as a grantee, and kms admin's changes.
#
#   scripts/fuzz.sh                 every target for FUZZ_SECONDS (default 20) each
#   scripts/fuzz.sh request 3600    one target for an hour (the documented longer run)
#   FUZZ_CMIN=1 scripts/fuzz.sh …   then minimise each corpus before committing it
#
# The stateful targets (sigv4, request, key_row, grants, admin) run against a real SoftHSM2
# token and a real Postgres database made here, like the server. New corpus entries are kept in fuzz/corpus/;
# crashes land in fuzz/artifacts/<target>/ and fail the run. Sanitizers are off (`-s none`) so
# stable Rust builds it; `FUZZ_SANITIZER=address RUSTC_BOOTSTRAP=1` turns AddressSanitizer on.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_tools
ensure_postgres
ensure_cargo_fuzz

targets=(ciphertext policy sigv4 request key_row grants admin)
[ $# -ge 1 ] && targets=("$1")
seconds="${2:-${FUZZ_SECONDS:-20}}"
sanitizer="${FUZZ_SANITIZER:-none}"
# FUZZ_DEV=1: an unoptimised build (2.5 minutes less to build; scripts/test.sh uses it).
profile=()
[ "${FUZZ_DEV:-0}" = 1 ] && profile=(--dev)

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
# The grants target makes a key per input: no key quota in the way of a long run.
export KMS_QUOTA__KEYS_PER_REGION=1000000000
export KMS_ADMIN_ACCESS_KEY_ID="AKIAFUZZFUZZFUZZFUZZ"
export KMS_ADMIN_SECRET_ACCESS_KEY="fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz"
export RUST_LOG="${RUST_LOG:-error,cryptoki=off}"

cd "$ROOT"
log "building kms and the fuzz targets"
# KMS_BIN: a kms binary already built (scripts/test.sh passes the one its tests used).
bin="${KMS_BIN:-}"
if [ -z "$bin" ]; then cargo build --bin kms -q; bin="$ROOT/target/debug/kms"; fi
"$bin" init >/dev/null
# The grants target's grantees: a grant names a principal that exists.
for u in fuzz-grantee fuzz-other; do
    "$bin" admin create-user --account-id 123456789012 --user-name "$u" >/dev/null
done
cargo fuzz build "${profile[@]}" -s "$sanitizer" >"$work/build.log" 2>&1 \
    || { grep -v "^ *Compiling" "$work/build.log" | tail -40; die "the fuzz targets do not build"; }
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    # FUZZ_KEEP=0 (scripts/test.sh): the committed corpus is read, new inputs go elsewhere.
    corpus=("fuzz/corpus/$t")
    [ "${FUZZ_KEEP:-1}" = 0 ] && { mkdir -p "$work/corpus-$t"; corpus=("$work/corpus-$t" "fuzz/corpus/$t"); }
    log "fuzzing $t for ${seconds}s"
    out="$work/$t.log"
    if ! cargo fuzz run "${profile[@]}" -s "$sanitizer" "$t" "${corpus[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=8192 \
        -print_final_stats=1 >"$out" 2>&1; then
        grep -m1 -B2 -A12 "panicked\|ERROR: libFuzzer" "$out" || tail -60 "$out"
        die "fuzz target $t failed; the input is in fuzz/artifacts/$t/"
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out" | grep -o '[0-9]*$' || echo '?')"
    printf '%-10s %8s executions in %ss, no crash, hang or leak\n' "$t" "$runs" "$seconds"
    if [ "${FUZZ_CMIN:-0}" = 1 ]; then
        cargo fuzz cmin "${profile[@]}" -s "$sanitizer" "$t" "fuzz/corpus/$t" >"$work/$t.cmin" 2>&1 \
            || { tail -20 "$work/$t.cmin"; die "corpus minimisation of $t failed"; }
        log "corpus of $t minimised to $(ls "fuzz/corpus/$t" | wc -l) inputs"
    fi
done
