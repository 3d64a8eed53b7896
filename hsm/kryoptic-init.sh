#!/usr/bin/env bash
# Create a Kryoptic token for the service in its own directory (idempotent).
#   hsm/kryoptic-init.sh MODULE DIR LABEL PIN [SO_PIN]
# MODULE is libkryoptic_pkcs11.so (scripts/lib.sh ensure_kryoptic builds it). Writes
# DIR/kryoptic.conf (one slot, its store DIR/token.sql); export KRYOPTIC_CONF=DIR/kryoptic.conf
# before running kms with hsm.module = MODULE. Needs pkcs11-tool (Debian: opensc).
set -euo pipefail
module="$1"; dir="$2"; label="$3"; pin="$4"; so_pin="${5:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
mkdir -p "$dir"
chmod 700 "$dir"
cat > "$dir/kryoptic.conf" <<CONF
[[slots]]
slot = 0
description = "kms token"
dbtype = "sqlite"
dbargs = "$dir/token.sql"
CONF
export KRYOPTIC_CONF="$dir/kryoptic.conf"
tool() { pkcs11-tool --module "$module" "$@"; }
if tool --list-token-slots 2>/dev/null | grep -q "token label[[:space:]]*:[[:space:]]*$label[[:space:]]*$"; then
    echo "token '$label' already exists in $dir" >&2
else
    tool --slot 0 --init-token --label "$label" --so-pin "$so_pin" >/dev/null
    tool --slot 0 --init-pin --login --login-type so --so-pin "$so_pin" --pin "$pin" >/dev/null
    echo "token '$label' created in $dir" >&2
fi
