#!/usr/bin/env bash
# Shared by dev.sh and test.sh: install what is missing and make sure a Postgres answers.
# Everything here is idempotent and works as root on a fresh Debian machine.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV_DIR="${KMS_DEV_DIR:-$ROOT/.dev}"

log() { printf '\033[1m==> [%s] %s\033[0m\n' "$(date +%T)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

APT_UPDATED=0
need_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        if [ "$APT_UPDATED" -eq 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_tools() {
    need_packages softhsm2 postgresql-client ca-certificates pkg-config gcc libc6-dev python3 openssl \
        opensc libclang-dev libssl-dev libsqlite3-dev
    command -v cargo >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/cargo" ] \
        || die "Rust is required: install it with rustup (https://rustup.rs), then re-run"
    command -v cargo >/dev/null 2>&1 || export PATH="$HOME/.cargo/bin:$PATH"
    [ -e /usr/lib/softhsm/libsofthsm2.so ] || die "softhsm2 is installed but /usr/lib/softhsm/libsofthsm2.so is missing"
}

# The console's browser tests: Debian's headless Chromium and its WebDriver.
ensure_browser() {
    need_packages chromium chromium-driver
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || die "chromium or chromedriver is missing after installing them"
}

# Refuse a checkout that tracks a token, a PIN or a working directory of the scripts: a
# SoftHSM2 token directory (its *.object files and the per-token lock), a Kryoptic token
# database, a PIN file, or anything under the scripts' own working directories.
check_no_secrets_tracked() {
    local tracked
    tracked="$(git -C "$ROOT" ls-files 2>/dev/null | grep -E \
        '(^|/)\.(dev|bench|bench-compare|bench-compare-src|bench-rewrap|kms-dev)/|\.object$|(^|/)token\.lock$|(^|/)[^/]*pin[^/]*\.(txt|file)$|(^|/)(user|so)?-?pin$|(^|/)kryoptic[^/]*\.(sql|db)$|\.sqlite3?$|(^|/)softhsm2?\.conf$' || true)"
    [ -z "$tracked" ] || die "tokens, PINs or working files are tracked by git (remove them and keep them ignored):
$tracked"
}

# Sets PG_BASE (postgres://user@host:port, no database). Uses 127.0.0.1:5432 when it answers;
# otherwise starts the machine's cluster, or a private one under $DEV_DIR/pg.
ensure_postgres() {
    if [ -n "${KMS_PG_BASE:-}" ]; then PG_BASE="$KMS_PG_BASE"; return; fi
    if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && psql "postgres://postgres@127.0.0.1:5432/postgres" -qXtAc 'select 1' >/dev/null 2>&1; then
        PG_BASE="postgres://postgres@127.0.0.1:5432"; return
    fi
    if ls /etc/postgresql/*/main >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        log "starting the machine's Postgres cluster"
        as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start >/dev/null 2>&1 || true
        for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
        if psql "postgres://postgres@127.0.0.1:5432/postgres" -qXtAc 'select 1' >/dev/null 2>&1; then
            PG_BASE="postgres://postgres@127.0.0.1:5432"; return
        fi
    fi
    # A private cluster with trust authentication on 127.0.0.1:55432.
    need_packages postgresql
    local bin pgdir port=55432
    bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
    pgdir="$DEV_DIR/pg"
    if ! pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
        log "starting a private Postgres in $pgdir on port $port"
        mkdir -p "$pgdir"
        local run=()
        if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$pgdir"; run=(runuser -u postgres --); fi
        if [ ! -f "$pgdir/data/PG_VERSION" ]; then
            "${run[@]}" "$bin/initdb" -D "$pgdir/data" -A trust -U postgres >/dev/null
        fi
        "${run[@]}" "$bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
            -o "-p $port -c listen_addresses=127.0.0.1 -k $pgdir" start >/dev/null
    fi
    PG_BASE="postgres://postgres@127.0.0.1:$port"
}

# Create database $1 if it does not exist.
ensure_database() {
    psql "$PG_BASE/postgres" -qXtAc "SELECT 1 FROM pg_database WHERE datname = '$1'" | grep -q 1 \
        || psql "$PG_BASE/postgres" -qXc "CREATE DATABASE $1" >/dev/null
}

ensure_aws_cli() {
    if ! command -v aws >/dev/null 2>&1; then
        log "installing the aws CLI (awscli from PyPI)"
        need_packages python3-pip python3-venv
        python3 -m venv "$DEV_DIR/awscli" >/dev/null
        "$DEV_DIR/awscli/bin/pip" install -q awscli
        export PATH="$DEV_DIR/awscli/bin:$PATH"
    fi
}

ensure_cargo_fuzz() {
    command -v cargo-fuzz >/dev/null 2>&1 || {
        log "installing cargo-fuzz"
        cargo install cargo-fuzz --locked --version 0.13.2 -q
    }
}

# Kryoptic, the second PKCS#11 implementation the suite runs against: a Rust soft token from
# crates.io, built as a cdylib once per machine into $KRYOPTIC_DIR (reused while present).
# Debian 12's OpenSSL is 3.0, so it links the system OpenSSL (`kryoptic-lib/dynamic`) with the
# `minimal` feature set (no EdDSA, which needs OpenSSL 3.2). Sets KRYOPTIC_MODULE.
KRYOPTIC_VERSION=1.5.4
KRYOPTIC_DIR="${KMS_KRYOPTIC_DIR:-$HOME/.cache/kms/kryoptic-$KRYOPTIC_VERSION}"
KRYOPTIC_MODULE="$KRYOPTIC_DIR/libkryoptic_pkcs11.so"
ensure_kryoptic() {
    [ -f "$KRYOPTIC_MODULE" ] && return 0
    log "building Kryoptic $KRYOPTIC_VERSION (PKCS#11 module) into $KRYOPTIC_DIR"
    local work="$KRYOPTIC_DIR/work"
    mkdir -p "$work/fetch/src"
    printf '[package]\nname = "kryoptic-fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\nkryoptic = { version = "=%s", default-features = false }\n' \
        "$KRYOPTIC_VERSION" > "$work/fetch/Cargo.toml"
    echo 'fn main() {}' > "$work/fetch/src/main.rs"
    (cd "$work/fetch" && cargo fetch -q) || return 1
    local src
    src="$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/kryoptic-"$KRYOPTIC_VERSION" | head -1)"
    rm -rf "$work/kryoptic" && cp -r "$src" "$work/kryoptic"
    (cd "$work/kryoptic" && cargo build --release --locked -q --no-default-features \
        --features minimal,kdf_all,kryoptic-lib/dynamic,kryoptic-lib/ec_montgomery) || return 1
    cp "$work/kryoptic/target/release/libkryoptic_pkcs11.so" "$KRYOPTIC_MODULE.tmp"
    mv "$KRYOPTIC_MODULE.tmp" "$KRYOPTIC_MODULE"
}

# The previous release's `kms` binary (the commit scripts/previous-release names), for the
# rolling-upgrade test: built once per machine (kept in ~/.cache/kms, by commit), in this
# checkout's target directory, where only the crate itself compiles (the dependencies are this
# build's), copied out, and this build's binary put back. Exports KMS_TEST_PREVIOUS_BIN.
# Arguments: those of `cargo test`.
build_previous_release() {
    local commit dir cache
    commit="$(grep -v '^#' "$ROOT/scripts/previous-release" | head -1)"
    # Built once per machine and commit, like Kryoptic: a release's binary does not change.
    cache="${KMS_PREVIOUS_RELEASE_DIR:-$HOME/.cache/kms/previous-release-$commit}"
    if [ ! -x "$cache/kms" ]; then
        dir="$DEV_DIR/previous-release"
        rm -rf "$dir"
        mkdir -p "$dir/src"
        git -C "$ROOT" archive "$commit" | tar -x -C "$dir/src" \
            || die "the previous release ($commit, scripts/previous-release) is not in this clone's history"
        (cd "$dir/src" && CARGO_TARGET_DIR="$ROOT/target" cargo build --bin kms -q) \
            || die "the previous release ($commit) does not build"
        mkdir -p "$cache"
        cp "$ROOT/target/debug/kms" "$cache/kms.partial"
        mv "$cache/kms.partial" "$cache/kms"
        rm -f "$ROOT/target/debug/kms"
        rm -rf "$dir"
        (cd "$ROOT" && cargo test --all-targets --no-run -q "$@")
    fi
    [ "$("$ROOT/target/debug/kms" --version)" != "$("$cache/kms" --version)" ] \
        || die "target/debug/kms is the previous release's binary"
    export KMS_TEST_PREVIOUS_BIN="$cache/kms" KMS_TEST_REQUIRE_PREVIOUS=1
}
