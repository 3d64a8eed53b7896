//! Asymmetric and HMAC keys: what each key spec is, which algorithms it offers (as far as the
//! token can do them), and the operations Sign, Verify, GetPublicKey, RSA Encrypt/Decrypt,
//! GenerateMac, VerifyMac, GenerateDataKeyPair and DeriveSharedSecret.
//!
//! Private keys and HMAC secrets are used only in the token. Public-key operations (Verify,
//! RSA encryption) run in aws-lc-rs against the stored, MAC-protected public key.

mod algorithms;
mod der;
mod ml_kem;

use super::preamble::{Access, Check};
use super::{Caller, Context, Kms, KmsError, LiveMaterial, ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT};
use crate::domain::Result;
use crate::hsm::{Hash, PairKind, SignScheme};
use crate::messages;
use crate::store::KeyRecord;
use crate::vocab::{
    EncryptionAlgorithmSpec, KeyAgreementAlgorithmSpec, KeySpec, KeyUsage, MacAlgorithmSpec,
    SigningAlgorithmSpec,
};
pub use algorithms::*;
use std::sync::Arc;
use zeroize::Zeroizing;

pub struct SignOutput {
    pub key_arn: String,
    pub signature: Vec<u8>,
}

/// What `GetPublicKey` returns.
pub struct PublicKeyOutput {
    pub key_arn: String,
    /// SubjectPublicKeyInfo, DER.
    pub public_key: Vec<u8>,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub algorithms: Algorithms,
}

/// An RSA encryption key checked for one call: its record, modulus size and OAEP hash.
pub(crate) struct RsaKey {
    pub(crate) rec: Arc<KeyRecord>,
    bits: u32,
    hash: Hash,
    algorithm: EncryptionAlgorithmSpec,
}

impl Kms {
    fn pair_kind(rec: &KeyRecord) -> Option<PairKind> {
        match kind(rec.key_spec) {
            Some(Kind::Pair(p)) => Some(p),
            _ => None,
        }
    }

    fn usage_error(rec: &KeyRecord, op: &str) -> KmsError {
        KmsError::InvalidKeyUsage(messages::usage_not_valid(
            &rec.arn(),
            rec.key_usage.as_str(),
            op,
        ))
    }

    fn require_signing_key(rec: &KeyRecord, op: &str) -> Result<PairKind> {
        match Self::pair_kind(rec) {
            Some(k) if rec.key_usage == SIGN_VERIFY => Ok(k),
            _ => Err(Self::usage_error(rec, op)),
        }
    }

    fn signing(
        rec: &KeyRecord,
        spec: SigningAlgorithmSpec,
        kind: PairKind,
    ) -> Result<SigningAlgorithm> {
        signing_algorithm(spec, kind).ok_or_else(|| {
            KmsError::InvalidKeyUsage(messages::algorithm_incompatible(
                spec.as_str(),
                rec.key_spec.as_str(),
            ))
        })
    }

    /// The key's current material, loaded in the token (verified by its row MAC).
    async fn current_material(&self, rec: &KeyRecord) -> Result<Arc<LiveMaterial>> {
        self.live_material(rec, rec.current_version)
            .await?
            .ok_or(KmsError::KeyUnavailable)
    }

    /// The public key of a key pair's current material (verified by its row MAC).
    async fn public_key_of(&self, rec: &KeyRecord) -> Result<Vec<u8>> {
        let live = self.current_material(rec).await?;
        live.public_key.clone().ok_or(KmsError::KeyUnavailable)
    }

    /// `Sign` and `Verify`'s key, authorized for `action` with the algorithm and message type
    /// as conditions, checked to be a signing key that offers `algorithm`, and what is signed.
    async fn signing_key(
        &self,
        caller: &Caller,
        key_id: &str,
        action: &str,
        algorithm: SigningAlgorithmSpec,
        message: &[u8],
        is_digest: bool,
    ) -> Result<(Arc<KeyRecord>, SigningAlgorithm, Vec<u8>)> {
        let message_type = if is_digest { "DIGEST" } else { "RAW" };
        let rec = self
            .signing_key_for(caller, key_id, action, algorithm, message_type)
            .await?;
        let op = action.trim_start_matches("kms:");
        let kind = Self::require_signing_key(&rec, op)?;
        if kind == PairKind::Ed25519 {
            // Recorded, in these words: each Ed25519 algorithm takes one message type.
            let refused = match (algorithm, is_digest) {
                (SigningAlgorithmSpec::Ed25519Sha512, true) => Some("DIGEST"),
                (SigningAlgorithmSpec::Ed25519PhSha512, false) => Some("RAW"),
                _ => None,
            };
            if let Some(t) = refused {
                return Err(KmsError::Validation(format!(
                    "Message type {t} is incompatible with algorithm {algorithm}."
                )));
            }
            if algorithm == SigningAlgorithmSpec::Ed25519PhSha512 && message.len() != 64 {
                return Err(KmsError::Validation(crate::messages::digest_length(
                    algorithm.as_str(),
                )));
            }
        }
        if kind == PairKind::Ed25519 && algorithm == SigningAlgorithmSpec::Ed25519PhSha512 {
            // Ed25519ph must be computed with the private key; no token here offers it.
            let caps = self.hsm.capabilities();
            return Err(KmsError::UnsupportedOperation(format!(
                "{algorithm} is not available: this key store's HSM ({} {}) has no Ed25519ph. Use ED25519_SHA_512.",
                caps.manufacturer, caps.model
            )));
        }
        let alg = Self::signing(&rec, algorithm, kind)?;
        let input = to_be_signed(&alg, algorithm, message, is_digest)?;
        Ok((rec, alg, input))
    }

    /// The key `Sign` or `Verify` names, once the caller may use it with this algorithm and
    /// message type (their condition keys) and it is enabled.
    async fn signing_key_for(
        &self,
        caller: &Caller,
        key_id: &str,
        action: &str,
        algorithm: SigningAlgorithmSpec,
        message_type: &str,
    ) -> Result<Arc<KeyRecord>> {
        let conditions = [
            ("kms:SigningAlgorithm", algorithm.as_str()),
            ("kms:MessageType", message_type),
        ];
        let access = Access::to(action, &[Check::Enabled]).conditions(&conditions);
        self.key_for(caller, key_id, access).await
    }

    /// `Sign` or `Verify` with `MessageType` `EXTERNAL_MU`: only ML-DSA keys take one, and no
    /// token here holds those, so once the key is found and the caller may use it, the answer
    /// is AWS's for any other key spec (recorded).
    pub async fn refuse_external_mu(
        &self,
        caller: &Caller,
        key_id: &str,
        action: &str,
        algorithm: SigningAlgorithmSpec,
    ) -> Result<()> {
        let rec = self
            .signing_key_for(caller, key_id, action, algorithm, "EXTERNAL_MU")
            .await?;
        Err(KmsError::Validation(format!(
            "Message type EXTERNAL_MU is incompatible with key spec {}.",
            rec.key_spec
        )))
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sign(
        &self,
        caller: &Caller,
        key_id: &str,
        message: &[u8],
        is_digest: bool,
        algorithm: SigningAlgorithmSpec,
        dry_run: bool,
    ) -> Result<SignOutput> {
        let (rec, alg, input) = self
            .signing_key(caller, key_id, "kms:Sign", algorithm, message, is_digest)
            .await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let live = self.current_material(&rec).await?;
        let sig = self
            .hsm
            .sign(live.handle.clone(), alg.scheme, input)
            .await?;
        let signature = if alg.scheme == SignScheme::Ecdsa {
            ecdsa_raw_to_der(&sig).ok_or_else(|| {
                KmsError::Internal("the token returned a malformed ECDSA signature".into())
            })?
        } else {
            sig
        };
        Ok(SignOutput {
            key_arn: rec.arn(),
            signature,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn verify(
        &self,
        caller: &Caller,
        key_id: &str,
        message: &[u8],
        is_digest: bool,
        sig: &[u8],
        algorithm: SigningAlgorithmSpec,
        dry_run: bool,
    ) -> Result<String> {
        let (rec, alg, _) = self
            .signing_key(caller, key_id, "kms:Verify", algorithm, message, is_digest)
            .await?;
        let spki = self.public_key_of(&rec).await?;
        if !verify(&alg, &spki, message, is_digest, sig) {
            return Err(KmsError::InvalidSignature);
        }
        // A dry run answers as the call would have (recorded: a bad signature is
        // KMSInvalidSignatureException with DryRun too).
        if dry_run {
            return Err(KmsError::DryRun);
        }
        Ok(rec.arn())
    }

    /// The key's public key (SPKI DER), with what `GetPublicKey` says of the key.
    pub async fn get_public_key(&self, caller: &Caller, key_id: &str) -> Result<PublicKeyOutput> {
        // A disabled key's public key is given too (recorded); one pending deletion or import
        // is not.
        let access = Access::to("kms:GetPublicKey", &[Check::NotPending]);
        let rec = self.key_for(caller, key_id, access).await?;
        if Self::pair_kind(&rec).is_none() {
            // Recorded: no message.
            return Err(KmsError::UnsupportedOperation(String::new()));
        }
        let spki = self.public_key_of(&rec).await?;
        Ok(PublicKeyOutput {
            key_arn: rec.arn(),
            public_key: spki,
            key_spec: rec.key_spec,
            key_usage: rec.key_usage,
            algorithms: algorithms(rec.key_spec, rec.key_usage, self.hsm.capabilities()),
        })
    }

    pub(super) fn require_rsa_encryption(
        &self,
        rec: &KeyRecord,
        algorithm: EncryptionAlgorithmSpec,
        op: &str,
    ) -> Result<(u32, Hash)> {
        let bits = match Self::pair_kind(rec) {
            Some(PairKind::Rsa(bits)) if rec.key_usage == ENCRYPT_DECRYPT => bits,
            _ if rec.key_spec == KeySpec::SymmetricDefault => {
                return Err(KmsError::InvalidKeyUsage(messages::algorithm_incompatible(
                    algorithm.as_str(),
                    "SYMMETRIC_DEFAULT",
                )))
            }
            _ => return Err(Self::usage_error(rec, op)),
        };
        let hash = oaep_hash(algorithm).ok_or_else(|| {
            KmsError::InvalidKeyUsage(messages::algorithm_incompatible(
                algorithm.as_str(),
                rec.key_spec.as_str(),
            ))
        })?;
        if hash == Hash::Sha256 && !self.hsm.capabilities().decrypts_oaep_sha256() {
            return Err(KmsError::UnsupportedOperation(format!(
                "{algorithm} is not available: this key store's HSM ({} {}) implements RSAES-OAEP with SHA-1 only. Use RSAES_OAEP_SHA_1.",
                self.hsm.capabilities().manufacturer,
                self.hsm.capabilities().model
            )));
        }
        Ok((bits, hash))
    }

    pub(super) fn refuse_context(ctx: &Context) -> Result<()> {
        if !ctx.is_empty() {
            return Err(KmsError::Validation(
                // Recorded, in these words.
                "EncryptionContext is not supported when encrypting/decrypting with asymmetric CMKs."
                    .into(),
            ));
        }
        Ok(())
    }

    /// The RSA encryption key `key_id` for `action` with `algorithm`: the preamble's checks, then
    /// the key's spec and usage, the algorithm, and no encryption context.
    pub(super) async fn rsa_key_for(
        &self,
        caller: &Caller,
        key_id: &str,
        action: &str,
        ctx: &Context,
        algorithm: EncryptionAlgorithmSpec,
        op: &str,
    ) -> Result<RsaKey> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to(action, &[Check::Enabled])
                    .context(ctx)
                    .conditions(&[("kms:EncryptionAlgorithm", algorithm.as_str())]),
            )
            .await?;
        let (bits, hash) = self.require_rsa_encryption(&rec, algorithm, op)?;
        Self::refuse_context(ctx)?;
        Ok(RsaKey {
            rec,
            bits,
            hash,
            algorithm,
        })
    }

    /// AWS's plaintext limit for the key and algorithm.
    pub(super) fn check_rsa_plaintext(key: &RsaKey, plaintext: &[u8]) -> Result<()> {
        let max = oaep_max(key.bits, key.hash);
        if plaintext.len() > max {
            return Err(KmsError::Validation(messages::rsa_plaintext_limit(
                key.algorithm.as_str(),
                key.rec.key_spec.as_str(),
                max,
            )));
        }
        Ok(())
    }

    /// RSAES-OAEP encryption with the key's public key (aws-lc-rs, against the stored,
    /// MAC-checked public key); the ciphertext is the bare OAEP block.
    pub(super) async fn rsa_encrypt(&self, key: &RsaKey, plaintext: &[u8]) -> Result<Vec<u8>> {
        Self::check_rsa_plaintext(key, plaintext)?;
        let spki = self.public_key_of(&key.rec).await?;
        let public = aws_lc_rs::rsa::PublicEncryptingKey::from_der(&spki)
            .ok()
            .and_then(|k| aws_lc_rs::rsa::OaepPublicEncryptingKey::new(k).ok())
            .ok_or(KmsError::KeyUnavailable)?;
        let oaep = match key.hash {
            Hash::Sha1 => &aws_lc_rs::rsa::OAEP_SHA1_MGF1SHA1,
            _ => &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
        };
        let mut out = vec![0u8; public.ciphertext_size()];
        let n = public
            .encrypt(oaep, plaintext, &mut out, None)
            .map_err(|_| KmsError::Internal("RSA-OAEP encryption failed".into()))?
            .len();
        out.truncate(n);
        Ok(out)
    }

    /// RSAES-OAEP decryption in the token (or raw RSA in the token and OAEP decoding here,
    /// where the token lacks the hash): every bad block is `InvalidCiphertextException`.
    pub(super) async fn rsa_decrypt(
        &self,
        key: &RsaKey,
        blob: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        if blob.len() != key.bits as usize / 8 {
            return Err(KmsError::InvalidCiphertext);
        }
        let live = self.current_material(&key.rec).await?;
        // The token profile says which codes mean a bad ciphertext (HsmError::BadCiphertext).
        Ok(self
            .hsm
            .rsa_oaep_decrypt(live.handle.clone(), key.hash, blob.to_vec())
            .await?)
    }

    /// `Encrypt` with an RSA key.
    pub async fn encrypt_asymmetric(
        &self,
        caller: &Caller,
        key_id: &str,
        plaintext: Zeroizing<Vec<u8>>,
        ctx: &Context,
        algorithm: EncryptionAlgorithmSpec,
        dry_run: bool,
    ) -> Result<super::EncryptOutput> {
        let key = self
            .rsa_key_for(caller, key_id, "kms:Encrypt", ctx, algorithm, "Encrypt")
            .await?;
        Self::check_rsa_plaintext(&key, &plaintext)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        Ok(super::EncryptOutput {
            blob: self.rsa_encrypt(&key, &plaintext).await?,
            key_arn: key.rec.arn(),
        })
    }

    /// `Decrypt` with an RSA key. Asymmetric ciphertexts name no key: `KeyId` is required.
    pub async fn decrypt_asymmetric(
        &self,
        caller: &Caller,
        key_id: &str,
        blob: &[u8],
        ctx: &Context,
        algorithm: EncryptionAlgorithmSpec,
        dry_run: bool,
    ) -> Result<super::DecryptOutput> {
        let key = self
            .rsa_key_for(caller, key_id, "kms:Decrypt", ctx, algorithm, "Decrypt")
            .await?;
        // A dry run decrypts too, as the symmetric one does: a ciphertext that does not
        // decrypt is InvalidCiphertextException, not DryRunOperationException (recorded on
        // AWS for every RSA spec and both OAEP hashes).
        let plaintext = self.rsa_decrypt(&key, blob).await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        Ok(super::DecryptOutput {
            plaintext,
            key_arn: key.rec.arn(),
        })
    }

    fn require_mac_key(rec: &KeyRecord, algorithm: MacAlgorithmSpec, op: &str) -> Result<Hash> {
        let Some(Kind::Hmac(h, _)) = kind(rec.key_spec) else {
            return Err(Self::usage_error(rec, op));
        };
        if algorithm != mac_algorithm(h) {
            return Err(KmsError::InvalidKeyUsage(messages::algorithm_incompatible(
                algorithm.as_str(),
                rec.key_spec.as_str(),
            )));
        }
        Ok(h)
    }

    async fn mac(&self, rec: &KeyRecord, h: Hash, message: &[u8]) -> Result<Vec<u8>> {
        let live = self.current_material(rec).await?;
        Ok(self
            .hsm
            .hmac(live.handle.clone(), h, message.to_vec())
            .await?)
    }

    pub async fn generate_mac(
        &self,
        caller: &Caller,
        key_id: &str,
        message: &[u8],
        algorithm: MacAlgorithmSpec,
        dry_run: bool,
    ) -> Result<(String, Vec<u8>)> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:GenerateMac", &[Check::Enabled])
                    .conditions(&[("kms:MacAlgorithm", algorithm.as_str())]),
            )
            .await?;
        let h = Self::require_mac_key(&rec, algorithm, "GenerateMac")?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        Ok((rec.arn(), self.mac(&rec, h, message).await?))
    }

    pub async fn verify_mac(
        &self,
        caller: &Caller,
        key_id: &str,
        message: &[u8],
        mac: &[u8],
        algorithm: MacAlgorithmSpec,
        dry_run: bool,
    ) -> Result<String> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:VerifyMac", &[Check::Enabled])
                    .conditions(&[("kms:MacAlgorithm", algorithm.as_str())]),
            )
            .await?;
        let h = Self::require_mac_key(&rec, algorithm, "VerifyMac")?;
        let expect = self.mac(&rec, h, message).await?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(expect.as_slice(), mac)) {
            return Err(KmsError::InvalidMac);
        }
        // As Verify: a dry run with a wrong MAC is KMSInvalidMacException (recorded).
        if dry_run {
            return Err(KmsError::DryRun);
        }
        Ok(rec.arn())
    }

    /// `Encapsulate` and `Decapsulate`'s key: the preamble's checks, then an ML-KEM key
    /// (`ENCAPSULATE_DECAPSULATE`). No token here generates ML-KEM keys, so no such key can
    /// exist: every call is answered as AWS answers it for the key named (not found, disabled,
    /// the wrong usage), and one that got this far would be refused naming the HSM.
    pub async fn encapsulation_key(
        &self,
        caller: &Caller,
        key_id: &str,
        op: &str,
    ) -> Result<String> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to(&format!("kms:{op}"), &[Check::Enabled]),
            )
            .await?;
        if rec.key_usage != crate::vocab::KeyUsage::EncapsulateDecapsulate {
            return Err(Self::usage_error(&rec, op));
        }
        let caps = self.hsm.capabilities();
        Err(KmsError::UnsupportedOperation(format!(
            "{op} is not available: this key store's HSM ({} {}) has no ML-KEM.",
            caps.manufacturer, caps.model
        )))
    }

    /// ECDH between the key's private key (in the token) and the caller's public key.
    pub async fn derive_shared_secret(
        &self,
        caller: &Caller,
        key_id: &str,
        algorithm: KeyAgreementAlgorithmSpec,
        public_key: &[u8],
        dry_run: bool,
    ) -> Result<(String, Zeroizing<Vec<u8>>, String)> {
        let rec = self
            .key_for(
                caller,
                key_id,
                Access::to("kms:DeriveSharedSecret", &[Check::Enabled])
                    .conditions(&[("kms:KeyAgreementAlgorithm", algorithm.as_str())]),
            )
            .await?;
        let curve = match Self::pair_kind(&rec) {
            Some(PairKind::Ec(c)) if rec.key_usage == KEY_AGREEMENT => c,
            _ => return Err(Self::usage_error(&rec, "DeriveSharedSecret")),
        };
        // AWS sends no message (recorded: an invalid PublicKey).
        let point =
            ec_point_of(public_key, curve).ok_or_else(|| KmsError::Validation(String::new()))?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let live = self.current_material(&rec).await?;
        let secret = self
            .hsm
            .ecdh(live.handle.clone(), point, curve.field_len())
            .await?;
        Ok((rec.arn(), secret, rec.origin.to_string()))
    }

    /// A data key pair: the private key (PKCS#8 DER) encrypted under a symmetric KMS key, and
    /// in plaintext when asked for.
    pub async fn generate_data_key_pair(
        &self,
        caller: &Caller,
        key_id: &str,
        spec: &str,
        ctx: &Context,
        with_plaintext: bool,
        dry_run: bool,
    ) -> Result<DataKeyPairOutput> {
        let (action, op) = if with_plaintext {
            ("kms:GenerateDataKeyPair", "GenerateDataKeyPair")
        } else {
            (
                "kms:GenerateDataKeyPairWithoutPlaintext",
                "GenerateDataKeyPairWithoutPlaintext",
            )
        };
        let checks = [Check::Enabled, Check::Symmetric(op)];
        let conditions = [
            ("kms:EncryptionAlgorithm", SYMMETRIC_DEFAULT),
            ("kms:DataKeyPairSpec", spec),
        ];
        let access = Access::to(action, &checks)
            .context(ctx)
            .conditions(&conditions);
        let rec = self.key_for(caller, key_id, access).await?;
        // AWS: "You cannot use an asymmetric KMS key or a KMS key in a custom key store."
        if rec.custom_key_store_id.is_some() {
            return Err(KmsError::UnsupportedOperation(format!(
                "{} is in a custom key store. {op} does not support KMS keys in a custom key store.",
                rec.arn()
            )));
        }
        if dry_run {
            return Err(KmsError::DryRun);
        }
        // A prime search takes a core: only so many at once ([`SoftwarePairs`]).
        let turn = match spec {
            "RSA_2048" | "RSA_3072" | "RSA_4096" => Some(SOFTWARE_PAIRS.turn().await?),
            _ => None,
        };
        // The request's clock stops meanwhile (`crate::deadline`).
        let generating = crate::deadline::generating();
        let (private, public) = tokio::task::spawn_blocking({
            let spec = spec.to_string();
            // The turn ends with the search, not with the request: a request that times out
            // or is dropped leaves its search running, and it keeps its place until done.
            move || {
                let _turn = turn;
                generate_pair(&spec)
            }
        })
        .await
        .map_err(|e| KmsError::Internal(format!("key pair generation did not complete: {e}")))??;
        drop(generating);
        let blob = self.seal(caller, &rec, private.clone(), ctx).await?;
        Ok(DataKeyPairOutput {
            key_arn: rec.arn(),
            private_blob: blob,
            private_plaintext: with_plaintext.then_some(private),
            public_key: public,
        })
    }
}

/// RSA data key pairs being generated in software: a prime search holds a core for tens of
/// milliseconds (RSA_2048) to seconds (RSA_4096), so callers within their cryptographic rate
/// could otherwise hold every core of the node and starve every other request. As many run as
/// the node has cores, and as many again may wait for a turn; a call beyond that is answered
/// `ThrottlingException` at once (AWS, too, gives RSA data key pairs lower rates than other
/// cryptographic calls).
pub(crate) struct SoftwarePairs {
    running: tokio::sync::Semaphore,
    /// Calls running or waiting.
    admitted: std::sync::atomic::AtomicUsize,
    most_admitted: usize,
}

static SOFTWARE_PAIRS: std::sync::LazyLock<SoftwarePairs> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    SoftwarePairs::new(cores)
});

/// A call admitted (running or waiting); uncounted when dropped, however the call ends.
struct Admitted<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A call's turn to generate, held for the generation (by the blocking task that runs it).
pub(crate) struct PairTurn<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    _admitted: Admitted<'a>,
}

impl SoftwarePairs {
    fn new(at_once: usize) -> Self {
        SoftwarePairs {
            running: tokio::sync::Semaphore::new(at_once),
            admitted: std::sync::atomic::AtomicUsize::new(0),
            most_admitted: 2 * at_once,
        }
    }

    /// Wait for a turn, or `Throttled` if as many calls as may wait are waiting already.
    pub(crate) async fn turn(&self) -> Result<PairTurn<'_>> {
        let before = self
            .admitted
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let admitted = Admitted(&self.admitted);
        if before >= self.most_admitted {
            return Err(KmsError::Throttled);
        }
        let permit = self
            .running
            .acquire()
            .await
            .map_err(|_| KmsError::Internal("key pair generation is closed".into()))?;
        Ok(PairTurn {
            _permit: permit,
            _admitted: admitted,
        })
    }
}

pub struct DataKeyPairOutput {
    pub key_arn: String,
    pub private_blob: Vec<u8>,
    pub private_plaintext: Option<Zeroizing<Vec<u8>>>,
    pub public_key: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn software_pairs_run_so_many_at_once_and_let_as_many_wait() {
        use futures_util::FutureExt;
        let gate = SoftwarePairs::new(1);
        let first = gate.turn().await.unwrap();
        // The second waits for the first; a third finds every place taken.
        let mut second = Box::pin(gate.turn());
        assert!((&mut second).now_or_never().is_none());
        assert!(matches!(gate.turn().await, Err(KmsError::Throttled)));
        // A waiter that gives up (its request timed out) frees its place.
        drop(second);
        let mut second = Box::pin(gate.turn());
        assert!((&mut second).now_or_never().is_none());
        drop(first);
        let _second = second.await.unwrap();
        let mut third = Box::pin(gate.turn());
        assert!((&mut third).now_or_never().is_none(), "waits, not refused");
    }
}
