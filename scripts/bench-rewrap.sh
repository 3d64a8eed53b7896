#!/usr/bin/env bash
# Root and MAC key rotation at scale: a fresh SoftHSM2 token and database, N keys created
# through the API, then `kms hsm rotate-root-key` and `kms hsm rotate-mac-key` timed on their own
# (nodes stopped): the re-wrap rate in blobs per second and the re-MAC rate in MACs per second
# (each MAC costs a row read, two HMACs in the token and a compare-and-set write). Then the
# restore drill at that size, timed: pg_dump, the token copied, the dump loaded into a fresh
# database, `kms backup verify` (every key's rows checked, every material unwrapped). In the same run, the token's own unwrap rate on one session
# (`kms-bench token`) is the limit to compare against: each blob costs an unwrap, a wrap and
# two HMACs in the token.
#
#   scripts/bench-rewrap.sh                 # 100,000 keys
#   BENCH_KEYS=10000 scripts/bench-rewrap.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEYS="${BENCH_KEYS:-100000}"
B="$ROOT/.bench-rewrap"
PORT="${BENCH_PORT:-4791}"
ensure_tools
ensure_postgres
rm -rf "$B"; mkdir -p "$B"; chmod 700 "$B"

log "building kms and kms-bench (release)"
(cd "$ROOT" && cargo build --release --bins -q)
KMS="$ROOT/target/release/kms"; BENCH="$ROOT/target/release/kms-bench"

pin="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
(umask 077; printf '%s' "$pin" > "$B/pin")
bash "$ROOT/hsm/softhsm2-init.sh" "$B/softhsm" kms-rewrap "$pin" >/dev/null
psql "$PG_BASE/postgres" -qXc "DROP DATABASE IF EXISTS kms_bench_rewrap" >/dev/null
psql "$PG_BASE/postgres" -qXc "CREATE DATABASE kms_bench_rewrap" >/dev/null
export SOFTHSM2_CONF="$B/softhsm/softhsm2.conf"
export KMS_DATABASE_URL="$PG_BASE/kms_bench_rewrap"
export KMS_HSM__TOKEN_LABEL=kms-rewrap
export KMS_HSM__PIN_FILE="$B/pin"
export KMS_LISTEN="127.0.0.1:$PORT"
export KMS_LOG="${BENCH_LOG:-warn,cryptoki=off}"
export KMS_QUOTA__CRYPTO_PER_SECOND=10000000 KMS_QUOTA__MANAGEMENT_PER_SECOND=10000000
# The figure is the re-wrap: the keys quota (100,000 per account and region) set above the keys made.
export KMS_QUOTA__KEYS_PER_REGION=1000000
export AWS_ACCESS_KEY_ID=AKIABENCHREWRAP00001
export AWS_SECRET_ACCESS_KEY="$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)"
KMS_ADMIN_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" KMS_ADMIN_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
    "$KMS" init >/dev/null

log "the token's own rate on one session (the limit)"
"$BENCH" token --seconds 2 --concurrency 1 --json "$B/token.jsonl" >/dev/null
"$BENCH" report "$B/token.jsonl" | grep -Ei "unwrap|HMAC" || true

log "creating $KEYS keys through the API"
"$KMS" serve >>"$B/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
"$BENCH" scale --endpoint "http://127.0.0.1:$PORT" --region us-east-1 --seconds 1 \
    --concurrency 1 --keys "$KEYS" --spread 1 --case "keys for the re-wrap" --json "$B/scale.jsonl" \
    | grep created
kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true

log "kms hsm rotate-root-key (the nodes stopped)"
start=$(date +%s.%N)
"$KMS" hsm rotate-root-key 2>"$B/rotate.log"
end=$(date +%s.%N)
tail -1 "$B/rotate.log"
blobs=$(psql "$KMS_DATABASE_URL" -tAXc "SELECT (SELECT count(*) FROM key_materials) + (SELECT count(*) FROM access_keys)")
under_v1=$(psql "$KMS_DATABASE_URL" -tAXc "SELECT count(*) FROM key_materials WHERE root_version = 1")
[ "$under_v1" = 0 ] || die "$under_v1 blobs are still under root key v1"
awk -v n="$blobs" -v s="$start" -v e="$end" 'BEGIN { printf "re-wrapped %d blobs in %.1f s: %.0f blobs/s\n", n, e - s, n / (e - s) }' \
    | tee "$B/result.txt"

log "kms hsm rotate-mac-key (the nodes stopped)"
macs=$("$KMS" hsm rotate-mac-key --no-wait >/dev/null 2>&1; "$KMS" hsm mac-keys | sed -n 's/^\([0-9]*\) stored MACs are under an older MAC key$/\1/p')
start=$(date +%s.%N)
"$KMS" hsm remac 2>"$B/remac.log"
end=$(date +%s.%N)
tail -1 "$B/remac.log"
left=$("$KMS" hsm mac-keys | sed -n 's/^\([0-9]*\) stored MACs are under an older MAC key$/\1/p')
[ "$left" = 0 ] || die "$left MACs are still under MAC key v1"
awk -v n="$macs" -v s="$start" -v e="$end" 'BEGIN { printf "made %d MACs again in %.1f s: %.0f MACs/s\n", n, e - s, n / (e - s) }' \
    | tee -a "$B/result.txt"

log "backup and restore of the deployment"
t0=$(date +%s.%N)
pg_dump -Fc -f "$B/backup.dump" "$KMS_DATABASE_URL"
cp -a "$B/softhsm" "$B/softhsm-restored"
sed -i "s#$B/softhsm/#$B/softhsm-restored/#" "$B/softhsm-restored/softhsm2.conf"
t1=$(date +%s.%N)
psql "$PG_BASE/postgres" -qXc "DROP DATABASE IF EXISTS kms_bench_restored" >/dev/null
psql "$PG_BASE/postgres" -qXc "CREATE DATABASE kms_bench_restored" >/dev/null
pg_restore -d "$PG_BASE/kms_bench_restored" "$B/backup.dump"
t2=$(date +%s.%N)
SOFTHSM2_CONF="$B/softhsm-restored/softhsm2.conf" KMS_DATABASE_URL="$PG_BASE/kms_bench_restored" \
    "$KMS" backup verify 2>&1 | tail -1
t3=$(date +%s.%N)
awk -v k="$KEYS" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN { printf "restore of %d keys: backup (pg_dump + token copy) %.1f s, load into a fresh database %.1f s, kms backup verify %.1f s: %.1f s in all\n", k, b - a, c - b, d - c, d - a }' \
    | tee -a "$B/result.txt"
psql "$PG_BASE/postgres" -qXc "DROP DATABASE IF EXISTS kms_bench_restored" >/dev/null
