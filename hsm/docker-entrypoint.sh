#!/usr/bin/env bash
# Container entry point: make sure the SoftHSM2 token on the volume exists, run the idempotent
# `kms init` (its output, with the administrator's secret the first time, is kept on the volume
# with mode 600), then serve.
set -euo pipefail
: "${KMS_HSM__PIN:?set KMS_HSM__PIN}"
# A real HSM (KMS_HSM__MODULE pointing at the vendor's module) brings its own token.
if [ -z "${KMS_SKIP_SOFTHSM_INIT:-}" ]; then
    bash /opt/kms/hsm/softhsm2-init.sh /var/lib/kms/softhsm "${KMS_HSM__TOKEN_LABEL:-kms}" "$KMS_HSM__PIN"
fi
for i in $(seq 1 60); do kms init > /var/lib/kms/init.out 2>/var/lib/kms/init.err && break; sleep 1; done
if grep -q '^AWS_SECRET_ACCESS_KEY=' /var/lib/kms/init.out; then
    (umask 077; cp /var/lib/kms/init.out /var/lib/kms/credentials)
    cat /var/lib/kms/init.out
fi
exec kms serve
