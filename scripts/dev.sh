#!/usr/bin/env bash
# Start a development KMS on http://127.0.0.1:4000 (KMS_LISTEN to change). Safe to re-run.
# By default it is `kms serve --dev`: no database server, an embedded SQLite store and a
# SoftHSM2 token under .dev/dev/, created and initialised on first start, credentials printed.
# KMS_DEV_STORE=postgres instead uses a Postgres database (started if none answers) and a
# SoftHSM2 token made with softhsm2-util, as production would.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_tools
build_kms() {
    log "building kms"
    # KMS_RELEASE=1 builds an optimised binary (slower to build, for benchmarks).
    if [ "${KMS_RELEASE:-0}" = 1 ]; then
        (cd "$ROOT" && cargo build --release --bin kms -q); bin="$ROOT/target/release/kms"
    else
        (cd "$ROOT" && cargo build --bin kms -q); bin="$ROOT/target/debug/kms"
    fi
}
export KMS_LISTEN="${KMS_LISTEN:-127.0.0.1:4000}"
export KMS_METRICS_LISTEN="${KMS_METRICS_LISTEN:-127.0.0.1:9464}"
if [ "${KMS_DEV_STORE:-sqlite}" != postgres ]; then
    build_kms
    mkdir -p "$DEV_DIR"; chmod 700 "$DEV_DIR"
    cat >&2 <<MSG

KMS endpoint: http://$KMS_LISTEN   (region ${KMS_REGIONS:-us-east-1}, account 123456789012)
Operator:     http://$KMS_METRICS_LISTEN/metrics  /readyz  /healthz
Try it (the credentials are printed below and kept in $DEV_DIR/dev/credentials):
  set -a; source $DEV_DIR/dev/credentials; set +a; export AWS_DEFAULT_REGION=us-east-1
  aws kms create-key --endpoint-url http://$KMS_LISTEN

MSG
    exec "$bin" serve --dev --dev-dir "$DEV_DIR/dev"
fi
ensure_postgres
mkdir -p "$DEV_DIR"; chmod 700 "$DEV_DIR"

label="kms-dev"
if [ ! -s "$DEV_DIR/pin" ]; then
    (umask 077; head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DEV_DIR/pin")
fi
bash "$ROOT/hsm/softhsm2-init.sh" "$DEV_DIR/softhsm" "$label" "$(cat "$DEV_DIR/pin")"
ensure_database kms_dev

build_kms

export SOFTHSM2_CONF="$DEV_DIR/softhsm/softhsm2.conf"
export KMS_DATABASE_URL="$PG_BASE/kms_dev"
export KMS_HSM__TOKEN_LABEL="$label"
export KMS_HSM__PIN_FILE="$DEV_DIR/pin"
export KMS_REGIONS="${KMS_REGIONS:-us-east-1}"

# The administrator's secret is printed once by `kms init`; keep it (mode 600) for re-runs.
out="$("$bin" init)"
if printf '%s\n' "$out" | grep -q '^AWS_SECRET_ACCESS_KEY='; then
    (umask 077; printf '%s\n' "$out" > "$DEV_DIR/credentials")
fi
[ -s "$DEV_DIR/credentials" ] || die "no stored credentials in $DEV_DIR/credentials; remove $DEV_DIR and re-run"

region="${KMS_REGIONS%%,*}"
cat <<MSG

KMS endpoint: http://$KMS_LISTEN   (region $region, account 123456789012)
Operator:     http://$KMS_METRICS_LISTEN/metrics  /readyz  /healthz
Credentials (also in $DEV_DIR/credentials):
$(cat "$DEV_DIR/credentials")

Try it:
  set -a; source $DEV_DIR/credentials; set +a; export AWS_DEFAULT_REGION=$region
  KEY=\$(aws kms create-key --endpoint-url http://$KMS_LISTEN --query KeyMetadata.KeyId --output text)
  echo -n 'hello' > pt.txt
  aws kms encrypt --endpoint-url http://$KMS_LISTEN --key-id \$KEY --plaintext fileb://pt.txt \\
      --query CiphertextBlob --output text | base64 -d > ct.bin
  aws kms decrypt --endpoint-url http://$KMS_LISTEN --ciphertext-blob fileb://ct.bin \\
      --query Plaintext --output text | base64 -d

MSG
exec "$bin" serve
