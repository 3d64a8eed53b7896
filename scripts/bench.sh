#!/usr/bin/env bash
# One-command benchmark: fresh SoftHSM2 tokens and databases, a release build of kms and
# kms-bench, and every measurement of docs/benchmarks.md in one run, each with the limit it is
# judged against measured in the same run (the token's own rate, a bare HTTP server, the
# disk's fdatasync), then the targets of issue 22 checked and plotted.
#
#   scripts/bench.sh                  # the full run (100,000 keys, 1,000,000 requests; ~25 min)
#   BENCH_QUICK=1 scripts/bench.sh    # every section, shorter (about 3 minutes after the build)
#   BENCH_KEYS=10000 BENCH_REQUESTS=200000 BENCH_SECONDS=2 scripts/bench.sh
#
# Sections: the limits; the operation matrix (audit on); audit off; a flame graph of Encrypt
# c=64 (perf + inferno); 10 keys against 100,000 keys (three rounds, each its own server and
# database); the console's pages; memory; a far token (every PKCS#11 call delayed by one round
# trip, by hsm/latency-shim) by session pool size and round trip, on SoftHSM2 (PKCS#11 2.40) and
# on Kryoptic (PKCS#11 3.0 messages); two and three nodes on one Postgres.
#
# Writes .bench/results.jsonl (one JSON object per figure), .bench/results.md (the tables and
# the targets) and .bench/*.svg (the plots). A full run also writes them into
# docs/benchmarks.md (between its "bench.sh" markers) and docs/bench/*.svg; BENCH_DOCS=0 keeps
# the docs as they are, BENCH_DOCS=1 writes them after a quick run too.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUICK="${BENCH_QUICK:-0}"
if [ "$QUICK" = 1 ]; then
    KEYS="${BENCH_KEYS:-2000}"; REQUESTS="${BENCH_REQUESTS:-50000}"; SECONDS_EACH="${BENCH_SECONDS:-1}"
    CONC="${BENCH_CONCURRENCY:-1,64}"; ROUNDS=3
    OPS="Encrypt 64 B,Decrypt,GenerateDataKey,Sign RSA-2048 PSS,Sign P-256"
    POOLS="${BENCH_POOLS:-1,4,16,64}"; RTTS="${BENCH_RTTS_US:-1000}"; DOCS="${BENCH_DOCS:-0}"
else
    KEYS="${BENCH_KEYS:-100000}"; REQUESTS="${BENCH_REQUESTS:-1000000}"; SECONDS_EACH="${BENCH_SECONDS:-3}"
    CONC="${BENCH_CONCURRENCY:-1,8,64}"; ROUNDS=3; OPS=""
    POOLS="${BENCH_POOLS:-1,4,16,64}"; RTTS="${BENCH_RTTS_US:-250,1000,2000}"; DOCS="${BENCH_DOCS:-1}"
fi
B="$ROOT/.bench"
PORT="${BENCH_PORT:-4790}"
SOFTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so

ensure_tools
ensure_postgres
need_packages linux-perf opensc
log "building the Kryoptic module (once per machine), for the far token with PKCS#11 3.0 messages"
ensure_kryoptic || die "Kryoptic does not build"
rm -rf "$B"; mkdir -p "$B"; chmod 700 "$B"

log "building kms, kms-bench and the latency shim (release)"
(cd "$ROOT" && cargo build --release --bins -q)
(cd "$ROOT/hsm/latency-shim" && CARGO_TARGET_DIR="$ROOT/target/latency-shim" cargo build --release -q)
KMS="$ROOT/target/release/kms"; BENCH="$ROOT/target/release/kms-bench"
SHIM="$ROOT/target/latency-shim/release/libkms_latency_shim.so"
# Flame graphs: inferno (crates.io), installed once into ~/.cargo/bin.
command -v inferno-flamegraph >/dev/null 2>&1 || cargo install -q --locked inferno >/dev/null 2>&1 \
    || log "inferno did not install: no flame graph"

export KMS_LOG="${BENCH_LOG:-warn,cryptoki=off}"
# The benchmark measures the server, not the per-account quotas (AWS: 2,000/s for DescribeKey).
export KMS_QUOTA__CRYPTO_PER_SECOND=10000000 KMS_QUOTA__MANAGEMENT_PER_SECOND=10000000
export AWS_ACCESS_KEY_ID=AKIABENCHMARK0000001
export AWS_SECRET_ACCESS_KEY="$(head -c 30 /dev/urandom | base64 | tr -d '/+=' | head -c 40)"

# instance NAME: a token and a database of its own, initialised with the benchmark's access key.
# instance NAME [kryoptic]: a token (SoftHSM2, or Kryoptic) and a database, `kms init` run.
declare -A KIND=()
instance() {
    local name="$1" pin
    KIND[$name]="${2:-softhsm}"
    pin="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    (umask 077; printf '%s' "$pin" > "$B/$name.pin")
    if [ "${KIND[$name]}" = kryoptic ]; then
        bash "$ROOT/hsm/kryoptic-init.sh" "$KRYOPTIC_MODULE" "$B/$name-kryoptic" "kms-$name" "$pin" 2>/dev/null
    else
        bash "$ROOT/hsm/softhsm2-init.sh" "$B/$name-softhsm" "kms-$name" "$pin" >/dev/null
    fi
    psql "$PG_BASE/postgres" -qXc "DROP DATABASE IF EXISTS kms_bench_$name" >/dev/null
    psql "$PG_BASE/postgres" -qXc "CREATE DATABASE kms_bench_$name" >/dev/null
    in_instance "$name" env KMS_ADMIN_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
        KMS_ADMIN_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" "$KMS" init >/dev/null
}
# instance_env NAME: IV, the settings of instance NAME (its token and its database).
instance_env() {
    IV=(KMS_DATABASE_URL="$PG_BASE/kms_bench_$1" KMS_HSM__TOKEN_LABEL="kms-$1" KMS_HSM__PIN_FILE="$B/$1.pin")
    if [ "${KIND[$1]}" = kryoptic ]; then
        IV+=(KRYOPTIC_CONF="$B/$1-kryoptic/kryoptic.conf" KMS_HSM__MODULE="$KRYOPTIC_MODULE")
    else
        IV+=(SOFTHSM2_CONF="$B/$1-softhsm/softhsm2.conf")
    fi
}
# in_instance NAME COMMAND…: run COMMAND with instance NAME's settings.
in_instance() {
    instance_env "$1"; shift
    env "${IV[@]}" "$@"
}
PIDS=()
# serve NAME PORT [VAR=VALUE…]: `kms serve` of instance NAME on PORT (its console on PORT+1).
serve() {
    local name="$1" port="$2"; shift 2
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "port $port is taken (another kms serve still running?)"
    instance_env "$name"
    # exec: the PID is the server's own (to stop it, and for perf and its memory).
    (exec env "${IV[@]}" KMS_LISTEN="127.0.0.1:$port" KMS_CONSOLE_LISTEN="127.0.0.1:$((port + 1))" "$@" \
        "$KMS" serve >>"$B/$name-$port.log" 2>&1) &
    PIDS+=($!)
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || die "kms serve ($name on $port) stopped (see $B/$name-$port.log)"
        sleep 0.1
    done
    die "kms serve ($name on $port) did not start (see $B/$name-$port.log)"
}
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
endpoint() { echo "http://127.0.0.1:$1"; }

J="$B/results.jsonl"
S=(--seconds "$SECONDS_EACH" --json "$J")
C=(--concurrency "$CONC" "${S[@]}")
R=(--region us-east-1)

instance main

log "limits: the token on one session, a bare HTTP server, the disk's fdatasync"
in_instance main "$BENCH" token "${S[@]}" --concurrency 1
"$BENCH" baseline "${C[@]}"
PGDATA_DIR="$(psql "$PG_BASE/postgres" -XAtc 'show data_directory' 2>/dev/null || true)"
[ -d "$PGDATA_DIR" ] || PGDATA_DIR="$B"
"$BENCH" fsync --json "$J" --dir "$PGDATA_DIR" --count "$([ "$QUICK" = 1 ] && echo 300 || echo 2000)"
# The trail's append alone (the service's statement, one event at a time, no HTTP, no token).
instance trail
in_instance trail "$BENCH" trail "${S[@]}"

log "the operation matrix (audit trail on)"
serve main "$PORT" KMS_METRICS_LISTEN="127.0.0.1:$((PORT + 2))"
MAIN_PID="${PIDS[-1]}"
"$BENCH" run --endpoint "$(endpoint "$PORT")" "${R[@]}" "${C[@]}" ${OPS:+--ops "$OPS"}

log "where a request's time goes: Encrypt 64 B at c=1 and c=64, by stage (the server's own metric)"
scrape() { python3 -c 'import sys,urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "http://127.0.0.1:$((PORT + 2))/metrics"; }
for c in 1 64; do
    scrape > "$B/stages-before"
    "$BENCH" run --endpoint "$(endpoint "$PORT")" "${R[@]}" "${S[@]}" --concurrency "$c" --ops "Encrypt 64 B" \
        --warmup 0 --label stages >/dev/null
    scrape > "$B/stages-after"
    python3 "$ROOT/scripts/bench-stages.py" "$B/stages-before" "$B/stages-after" "$c" >> "$J"
done

log "audit trail on and off, Encrypt c=64, in turns"
stop_all
for r in 1 2; do
    serve main "$PORT" KMS_AUDIT_ENABLED=false
    "$BENCH" run --endpoint "$(endpoint "$PORT")" "${R[@]}" "${S[@]}" --concurrency 64 --ops "Encrypt 64 B" --label audit-off
    stop_all
    serve main "$PORT"
    "$BENCH" run --endpoint "$(endpoint "$PORT")" "${R[@]}" "${S[@]}" --concurrency 64 --ops "Encrypt 64 B" --label audit-on
    [ "$r" = 2 ] || stop_all
done
MAIN_PID="${PIDS[-1]}"

log "a flame graph of the server under Encrypt c=64"
if command -v inferno-flamegraph >/dev/null 2>&1 && command -v perf >/dev/null 2>&1; then
    FLAME_SECONDS="$([ "$QUICK" = 1 ] && echo 4 || echo 10)"
    perf record -q -F 299 --call-graph dwarf,16384 -p "$MAIN_PID" -o "$B/perf.data" -- sleep "$FLAME_SECONDS" \
        >/dev/null 2>"$B/perf.log" &
    PERF_PID=$!
    sleep 0.5
    "$BENCH" run --endpoint "$(endpoint "$PORT")" "${R[@]}" --seconds "$FLAME_SECONDS" --concurrency 64 \
        --ops "Encrypt 64 B" --label profiled >/dev/null
    wait "$PERF_PID" || true
    perf script -i "$B/perf.data" 2>/dev/null | inferno-collapse-perf > "$B/perf.folded" 2>/dev/null \
        && inferno-flamegraph --title "kms serve, Encrypt 64 B at c=64 (audit on)" < "$B/perf.folded" \
            > "$B/flamegraph.svg" 2>/dev/null \
        || log "perf or inferno failed: no flame graph (see $B/perf.log)"
    rm -f "$B/perf.data"
fi

log "memory: resident size after 100,000 and after $REQUESTS requests"
"$BENCH" load --endpoint "$(endpoint "$PORT")" "${R[@]}" --requests 100000
m1="$(rss_kb "$MAIN_PID")"
"$BENCH" load --endpoint "$(endpoint "$PORT")" "${R[@]}" --requests "$((REQUESTS > 100000 ? REQUESTS - 100000 : 1))"
m2="$(rss_kb "$MAIN_PID")"
printf '{"label":"kms","case":"RSS after 100,000 requests","kb":%s}\n{"label":"kms","case":"RSS after %s requests","kb":%s}\n' \
    "$m1" "$REQUESTS" "$m2" >> "$J"

if [ "$QUICK" != 1 ]; then
    log "the console's pages with the keys in the account"
    "$BENCH" console --endpoint "$(endpoint "$PORT")" "${R[@]}" --json "$J" \
        --console "$(endpoint $((PORT + 1)))" --samples 50
fi
stop_all

log "scale: Encrypt over 10 keys against 1,000 of $KEYS keys, two servers, $ROUNDS rounds in turns"
instance small
instance large
serve small $((PORT + 10))
serve large $((PORT + 20))
for r in $(seq 1 "$ROUNDS"); do
    "$BENCH" scale --endpoint "$(endpoint $((PORT + 10)))" "${R[@]}" "${S[@]}" --concurrency 64 --keys 10 \
        --spread 10 --key-file "$B/small.keys" --case "Encrypt 64 B, 10 keys" --label "round $r"
    "$BENCH" scale --endpoint "$(endpoint $((PORT + 20)))" "${R[@]}" "${S[@]}" --concurrency 64 --keys "$KEYS" \
        --spread 1000 --key-file "$B/large.keys" --case "Encrypt 64 B, 1,000 of $KEYS keys" --label "round $r"
done
stop_all

# far NAME MODULE LABEL: instance NAME's token (MODULE) behind hsm/latency-shim, each round trip
# of RTTS: the token's own round trip, then Encrypt c=64 at each session pool size of POOLS.
IFS=, read -ra rtts <<< "$RTTS"
IFS=, read -ra pools <<< "$POOLS"
far() {
    local name="$1" module="$2" label="$3" rtt pool
    for rtt in "${rtts[@]}"; do
        FAR=(KMS_HSM__MODULE="$SHIM" LATENCY_SHIM_MODULE="$module" LATENCY_SHIM_DELAY_US="$rtt")
        in_instance "$name" env "${FAR[@]}" "$BENCH" token --seconds 1 --json "$J" --concurrency 1 \
            --label "$label rtt=${rtt}us"
        for pool in "${pools[@]}"; do
            serve "$name" $((PORT + 30)) "${FAR[@]}" KMS_HSM__INLINE_CALLS=false KMS_HSM__SESSION_POOL_SIZE="$pool"
            "$BENCH" run --endpoint "$(endpoint $((PORT + 30)))" "${R[@]}" "${S[@]}" --concurrency 64 \
                --ops "Encrypt 64 B" --label "$label rtt=${rtt}us pool=$pool"
            stop_all
        done
    done
}
log "a far token: every PKCS#11 call one round trip away (hsm/latency-shim), by session pool size"
instance far
far far "$SOFTHSM_MODULE" "far"
log "a far token that has PKCS#11 3.0 messages (Kryoptic): one call an Encrypt, by session pool size"
instance farkryoptic kryoptic
far farkryoptic "$KRYOPTIC_MODULE" "far kryoptic"

log "several nodes on one Postgres and one token: 1, 2 and 3 servers, 64 connections in all"
instance nodes
for n in 1 2 3; do
    eps=""
    for i in $(seq 1 "$n"); do
        serve nodes $((PORT + 40 + 2 * i))
        eps="${eps:+$eps,}$(endpoint $((PORT + 40 + 2 * i)))"
    done
    "$BENCH" run --endpoint "$eps" "${R[@]}" "${S[@]}" --concurrency 64 --ops "Encrypt 64 B" --label "nodes=$n"
    stop_all
done

log "the report"
"$BENCH" report "$J" > "$B/results.md"
MACHINE="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr); SoftHSM $(softhsm2-util --version 2>/dev/null | head -1 || true); Postgres $(psql "$PG_BASE/postgres" -XAtc 'show server_version' 2>/dev/null | cut -d' ' -f1 || true)"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock hsm scripts 2>/dev/null || echo ' (with uncommitted changes)')"
COMMAND="$([ "$QUICK" != 1 ] || echo "BENCH_QUICK=1 ")BENCH_KEYS=$KEYS BENCH_REQUESTS=$REQUESTS BENCH_SECONDS=$SECONDS_EACH scripts/bench.sh"
python3 "$ROOT/scripts/bench-report.py" "$J" "$B" --machine "$MACHINE" --commit "$COMMIT" \
    --command "$COMMAND" >> "$B/results.md"
cat "$B/results.md"

if [ "$DOCS" = 1 ]; then
    mkdir -p "$ROOT/docs/bench"
    cp "$B"/*.svg "$ROOT/docs/bench/"
    python3 - "$ROOT/docs/benchmarks.md" "$B/results.md" <<'EOF'
import sys
doc, res = sys.argv[1], open(sys.argv[2]).read()
begin, end = "<!-- bench.sh: begin -->", "<!-- bench.sh: end -->"
text = open(doc).read()
block = begin + "\n" + res.replace("](", "](bench/").replace("](bench/http", "](http") + "\n" + end
if begin in text and end in text:
    text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(doc, "w").write(text)
EOF
    log "wrote docs/benchmarks.md (between its bench.sh markers) and docs/bench/*.svg"
fi
