#!/usr/bin/env bash
# Create a SoftHSM2 token for the service in its own directory (idempotent).
#   hsm/softhsm2-init.sh DIR LABEL PIN [SO_PIN]
# Writes DIR/softhsm2.conf; export SOFTHSM2_CONF=DIR/softhsm2.conf before running kms.
set -euo pipefail
dir="$1"; label="$2"; pin="$3"; so_pin="${4:-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
mkdir -p "$dir/tokens"
chmod 700 "$dir"
cat > "$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$dir/softhsm2.conf"
if softhsm2-util --show-slots 2>/dev/null | grep -q "Label:[[:space:]]*$label[[:space:]]*$"; then
    echo "token '$label' already exists in $dir" >&2
else
    softhsm2-util --init-token --free --label "$label" --so-pin "$so_pin" --pin "$pin" >/dev/null
    echo "token '$label' created in $dir" >&2
fi
