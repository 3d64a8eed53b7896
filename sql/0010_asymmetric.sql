-- Asymmetric keys: the public key of a key pair, as X.509 SubjectPublicKeyInfo DER, stored
-- beside the wrapped private key (and covered by the same row MAC).
ALTER TABLE key_materials ADD COLUMN public_key BYTEA;
