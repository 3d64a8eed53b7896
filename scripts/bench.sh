#!/usr/bin/env bash
# One-command benchmark: a fresh SoftHSM2 token and database, a release build of kms and
# kms-bench, a server, and every measurement of docs/benchmarks.md in one run, with the
# limits to compare against (the token's own rate, a bare HTTP server) measured in the same run.
#
#   scripts/bench.sh                     # the full run (100,000 keys, 1,000,000 requests)
#   BENCH_KEYS=10000 BENCH_REQUESTS=200000 BENCH_SECONDS=2 scripts/bench.sh   # shorter
#
# Writes .bench/results.jsonl (one JSON object per figure) and .bench/results.md (the table).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEYS="${BENCH_KEYS:-100000}"
REQUESTS="${BENCH_REQUESTS:-1000000}"
SECONDS_EACH="${BENCH_SECONDS:-3}"
CONC="${BENCH_CONCURRENCY:-1,8,64}"
B="$ROOT/.bench"
PORT="${BENCH_PORT:-4790}"

ensure_tools
ensure_postgres
rm -rf "$B"; mkdir -p "$B"; chmod 700 "$B"

log "building kms and kms-bench (release)"
(cd "$ROOT" && cargo build --release --bins -q)
KMS="$ROOT/target/release/kms"; BENCH="$ROOT/target/release/kms-bench"

pin="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(umask 077; printf '%s' "$pin" > "$B/pin")
bash "$ROOT/hsm/softhsm2-init.sh" "$B/softhsm" kms-bench "$pin"
psql "$PG_BASE/postgres" -qXc "DROP DATABASE IF EXISTS kms_bench" >/dev/null
psql "$PG_BASE/postgres" -qXc "CREATE DATABASE kms_bench" >/dev/null

export SOFTHSM2_CONF="$B/softhsm/softhsm2.conf"
export KMS_DATABASE_URL="$PG_BASE/kms_bench"
export KMS_HSM__TOKEN_LABEL=kms-bench
export KMS_HSM__PIN_FILE="$B/pin"
export KMS_LISTEN="127.0.0.1:$PORT"
export KMS_CONSOLE_LISTEN="127.0.0.1:$((PORT + 1))"
export KMS_LOG="${BENCH_LOG:-warn,cryptoki=off}"
# The benchmark measures the server, not the per-account quotas (AWS: 2,000/s for DescribeKey).
export KMS_QUOTA__CRYPTO_PER_SECOND=10000000 KMS_QUOTA__MANAGEMENT_PER_SECOND=10000000
export AWS_ACCESS_KEY_ID=AKIABENCHMARK0000001
export AWS_SECRET_ACCESS_KEY="$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)"
KMS_ADMIN_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" KMS_ADMIN_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
    "$KMS" init >/dev/null

SERVER_PID=""
start_server() {
    "$KMS" serve >>"$B/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    die "the server did not start (see $B/server.log)"
}
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
}
trap stop_server EXIT
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }

J="$B/results.jsonl"
T=(--endpoint "http://127.0.0.1:$PORT" --region us-east-1)
S=(--seconds "$SECONDS_EACH" --json "$J")
C=(--concurrency "$CONC" "${S[@]}")

log "limits: the token on one session, and a bare HTTP server"
"$BENCH" token "${S[@]}" --concurrency 1
"$BENCH" baseline "${C[@]}"

log "the operation matrix (audit trail on)"
start_server
"$BENCH" run "${T[@]}" "${C[@]}"

log "scale: Encrypt over 10 keys, then over 1,000 keys after $KEYS keys exist"
"$BENCH" scale "${T[@]}" "${S[@]}" --concurrency 64 --keys 10 --spread 10 --case "Encrypt 64 B, 10 keys"
"$BENCH" scale "${T[@]}" "${S[@]}" --concurrency 64 --keys "$KEYS" --spread 1000 \
    --case "Encrypt 64 B, 1,000 of $KEYS keys"

log "the console's pages with $KEYS keys (and more) in the account"
"$BENCH" console "${T[@]}" --json "$J" --console "http://127.0.0.1:$((PORT + 1))" --samples 50

log "memory: resident size after 100,000 and after $REQUESTS requests"
"$BENCH" load "${T[@]}" --requests 100000
m1="$(rss_kb)"
"$BENCH" load "${T[@]}" --requests "$((REQUESTS - 100000))"
m2="$(rss_kb)"
printf '{"label":"kms","case":"RSS after 100,000 requests","kb":%s}\n{"label":"kms","case":"RSS after %s requests","kb":%s}\n' \
    "$m1" "$REQUESTS" "$m2" >> "$J"
echo "resident memory: ${m1} kB after 100,000 requests, ${m2} kB after $REQUESTS"
stop_server

log "audit trail off (the same Encrypt load)"
KMS_AUDIT_ENABLED=false start_server
"$BENCH" run "${T[@]}" "${S[@]}" --concurrency 64 --ops "Encrypt 64 B" --label audit-off
stop_server

"$BENCH" report "$J" > "$B/results.md"
{
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); $(softhsm2-util --version 2>/dev/null | head -1 | sed 's/^/SoftHSM /')"
    echo "Command: BENCH_KEYS=$KEYS BENCH_REQUESTS=$REQUESTS BENCH_SECONDS=$SECONDS_EACH scripts/bench.sh"
} >> "$B/results.md"
cat "$B/results.md"
