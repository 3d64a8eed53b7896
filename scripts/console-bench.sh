#!/usr/bin/env bash
# The console's pages with 10 keys, then N keys (default 100,000), then again after a restart
# (every cache cold): kms-bench console against a throwaway token and database in /tmp/cbench.
# Needs a release build (cargo build --release --bins). docs/benchmarks.md has the figures.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/lib.sh"
ensure_postgres
KEYS="${1:-100000}"
B=/tmp/cbench; rm -rf "$B"; mkdir -p "$B"; chmod 700 "$B"
KMS="$ROOT/target/release/kms"; BENCH="$ROOT/target/release/kms-bench"
pin="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(umask 077; printf '%s' "$pin" > "$B/pin")
bash "$ROOT/hsm/softhsm2-init.sh" "$B/softhsm" kms-cbench "$pin" >/dev/null
psql "$PG_BASE/postgres" -qXc "DROP DATABASE IF EXISTS kms_cbench" >/dev/null
psql "$PG_BASE/postgres" -qXc "CREATE DATABASE kms_cbench" >/dev/null
export SOFTHSM2_CONF="$B/softhsm/softhsm2.conf" KMS_DATABASE_URL="$PG_BASE/kms_cbench"
export KMS_HSM__TOKEN_LABEL=kms-cbench KMS_HSM__PIN_FILE="$B/pin"
PORT=4890
export KMS_LISTEN="127.0.0.1:$PORT" KMS_CONSOLE_LISTEN="127.0.0.1:$((PORT + 1))" KMS_LOG="warn,cryptoki=off"
export KMS_QUOTA__CRYPTO_PER_SECOND=10000000 KMS_QUOTA__MANAGEMENT_PER_SECOND=10000000
export AWS_ACCESS_KEY_ID=AKIABENCHMARK0000001
export AWS_SECRET_ACCESS_KEY="$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)"
KMS_ADMIN_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" KMS_ADMIN_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" "$KMS" init >/dev/null
start() { "$KMS" serve >>"$B/server.log" 2>&1 & PID=$!; for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.1; done; exit 1; }
stop() { kill $PID; wait $PID 2>/dev/null || true; }
T=(--endpoint "http://127.0.0.1:$PORT" --region us-east-1)
start
"$BENCH" console "${T[@]}" --json "$B/ten.jsonl" --console "http://127.0.0.1:$((PORT + 1))" --samples 50 --keys 10
"$BENCH" console "${T[@]}" --json "$B/warm.jsonl" --console "http://127.0.0.1:$((PORT + 1))" --samples 50 --keys "$((KEYS - 10))"
stop; start
"$BENCH" console "${T[@]}" --json "$B/cold.jsonl" --console "http://127.0.0.1:$((PORT + 1))" --samples 50
stop
