#!/usr/bin/env bash
# A/B benchmark of two builds on this machine, in one run: the working tree (B) and a git
# revision (A, default: the last commit on main before this branch's work), each its own
# release build, its own fresh token and database, measured in turns (A B A B …) so that
# drift in the machine's load falls on both alike.
#
#   scripts/bench-compare.sh [REV] [ROUNDS]        # default: REV=HEAD~1, 3 rounds
#   BENCH_SKIP_BUILD=1 scripts/bench-compare.sh     # again, with the binaries already built
#   BENCH_OPS="Encrypt 64 B" BENCH_CONCURRENCY=64 BENCH_SECONDS=5 scripts/bench-compare.sh a2f0eda
#
# Prints each round and the median of each side; results in .bench-compare/results.jsonl.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REV="${1:-HEAD~1}"
ROUNDS="${2:-3}"
OPS="${BENCH_OPS:-Encrypt 64 B}"
CONC="${BENCH_CONCURRENCY:-64}"
SECS="${BENCH_SECONDS:-5}"
W="$ROOT/.bench-compare"
ensure_tools
ensure_postgres
rm -rf "$W"; mkdir -p "$W"; chmod 700 "$W"

# BENCH_SKIP_BUILD=1: measure the binaries the last run built.
if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
    log "building B (the working tree, release)"
    (cd "$ROOT" && cargo build --release --bins -q)
    log "building A ($REV, release, in a worktree)"
    git -C "$ROOT" worktree remove --force "$W/../.bench-compare-src" 2>/dev/null || true
    rm -rf "$ROOT/.bench-compare-src"
    git -C "$ROOT" worktree add --detach "$ROOT/.bench-compare-src" "$REV" >/dev/null
    (cd "$ROOT/.bench-compare-src" && CARGO_TARGET_DIR="$ROOT/target/bench-a" cargo build --release --bins -q)
fi
BENCH="$ROOT/target/release/kms-bench"

export AWS_ACCESS_KEY_ID=AKIABENCHCOMPARE0001
export AWS_SECRET_ACCESS_KEY="$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)"
export KMS_QUOTA__CRYPTO_PER_SECOND=10000000 KMS_QUOTA__MANAGEMENT_PER_SECOND=10000000
export KMS_LOG="warn,cryptoki=off"

# side NAME BINARY PORT: a token and database of its own, initialised.
setup() {
    local name="$1" bin="$2" port="$3" pin
    pin="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    (umask 077; printf '%s' "$pin" > "$W/$name.pin")
    bash "$ROOT/hsm/softhsm2-init.sh" "$W/$name-softhsm" "kms-$name" "$pin" >/dev/null
    psql "$PG_BASE/postgres" -qXc "DROP DATABASE IF EXISTS kms_cmp_$name" >/dev/null
    psql "$PG_BASE/postgres" -qXc "CREATE DATABASE kms_cmp_$name" >/dev/null
    env SOFTHSM2_CONF="$W/$name-softhsm/softhsm2.conf" KMS_DATABASE_URL="$PG_BASE/kms_cmp_$name" \
        KMS_HSM__TOKEN_LABEL="kms-$name" KMS_HSM__PIN_FILE="$W/$name.pin" \
        KMS_ADMIN_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" KMS_ADMIN_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
        "$bin" init >/dev/null
}
PID=""
start() {
    local name="$1" bin="$2" port="$3"
    env SOFTHSM2_CONF="$W/$name-softhsm/softhsm2.conf" KMS_DATABASE_URL="$PG_BASE/kms_cmp_$name" \
        KMS_HSM__TOKEN_LABEL="kms-$name" KMS_HSM__PIN_FILE="$W/$name.pin" KMS_LISTEN="127.0.0.1:$port" \
        "$bin" serve >>"$W/$name.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    die "$name did not start (see $W/$name.log)"
}
stop() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; fi; }
trap 'stop; git -C "$ROOT" worktree remove --force "$ROOT/.bench-compare-src" 2>/dev/null || true' EXIT

setup a "$ROOT/target/bench-a/release/kms" 4791
setup b "$ROOT/target/release/kms" 4792
for r in $(seq 1 "$ROUNDS"); do
    # Each side goes first in every other round: an order effect falls on both alike.
    order="a b"; [ $((r % 2)) = 0 ] && order="b a"
    for side in $order; do
        if [ "$side" = a ]; then bin="$ROOT/target/bench-a/release/kms"; port=4791; else bin="$ROOT/target/release/kms"; port=4792; fi
        start "$side" "$bin" "$port"
        "$BENCH" run --endpoint "http://127.0.0.1:$port" --region us-east-1 --ops "$OPS" \
            --concurrency "$CONC" --seconds "$SECS" --label "$side-round$r" --json "$W/results.jsonl" >/dev/null
        stop
    done
done
python3 - "$W/results.jsonl" "$REV" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: next(r[k] for k in ("rps", "requests_per_second", "throughput") if k in r)
by = {"a": [], "b": []}
for r in rows:
    side = r["label"].split("-")[0]
    print(f'{r["label"]:>10}  {r.get("case","")}  c={r.get("concurrency","")}  {key(r):.0f} req/s')
    by[side].append(key(r))
a, b = statistics.median(by["a"]), statistics.median(by["b"])
print(f"median A ({sys.argv[2]}): {a:.0f} req/s; B (working tree): {b:.0f} req/s; B/A = {b/a:.3f}")
EOF
