//! Symmetric cryptography: `Encrypt`, `Decrypt`, `ReEncrypt`, `GenerateDataKey` (and its
//! variants through it) and `GenerateRandom`.

use super::*;
use crate::vocab::EncryptionAlgorithmSpec;

impl Kms {
    pub async fn encrypt(
        &self,
        caller: &Caller,
        key_id: &str,
        plaintext: Zeroizing<Vec<u8>>,
        ctx: &Context,
        dry_run: bool,
    ) -> Result<EncryptOutput> {
        let access = Access::to(
            "kms:Encrypt",
            &[Check::Enabled, Check::Symmetric("Encrypt")],
        )
        .context(ctx)
        .conditions(&[("kms:EncryptionAlgorithm", SYMMETRIC_DEFAULT)]);
        let rec = self.key_for(caller, key_id, access).await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let blob = self.seal(caller, &rec, plaintext, ctx).await?;
        Ok(EncryptOutput {
            blob,
            key_arn: rec.arn(),
        })
    }

    pub async fn decrypt(
        &self,
        caller: &Caller,
        blob: &[u8],
        ctx: &Context,
        key_id: Option<&str>,
        dry_run: bool,
    ) -> Result<DecryptOutput> {
        let (rec, plaintext) = self.open(caller, "kms:Decrypt", blob, ctx, key_id).await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        Ok(DecryptOutput {
            plaintext,
            key_arn: rec.arn(),
        })
    }

    /// `DryRun` with `IGNORE_CIPHERTEXT`: the checks a real call makes on the key `key_id`
    /// names (permission with this encryption context and algorithm, key state and usage),
    /// without a ciphertext; `DryRunOperationException` if they pass.
    pub async fn dry_run_without_ciphertext(
        &self,
        caller: &Caller,
        action: &str,
        key_id: &str,
        ctx: &Context,
        algorithm: EncryptionAlgorithmSpec,
    ) -> Result<()> {
        let rec = self.resolve(caller, key_id, action).await?;
        if algorithm == EncryptionAlgorithmSpec::SymmetricDefault {
            self.check_symmetric_decrypt(caller, action, &rec, ctx)
                .await?;
        } else {
            let conditions = [("kms:EncryptionAlgorithm", algorithm.as_str())];
            let access = Access::to(action, &[Check::Enabled])
                .context(ctx)
                .conditions(&conditions);
            self.admit(caller, &rec, access).await?;
            self.require_rsa_encryption(&rec, algorithm, "Decrypt")?;
            Self::refuse_context(ctx)?;
        }
        Err(KmsError::DryRun)
    }

    /// The caller of a ReEncrypt whose source is under the key `source` names in blobs (if
    /// known): with `kms:ReEncryptOnSameKey`, true when the destination is that key. A key
    /// that does not resolve is not the same; the call fails on it later, in AWS's order.
    async fn re_encrypting(
        &self,
        caller: &Caller,
        source: Option<uuid::Uuid>,
        destination_key_id: &str,
    ) -> Caller {
        let destination = self
            .resolve_unnoted(caller, destination_key_id, "kms:ReEncryptTo")
            .await
            .ok();
        let same = matches!((source, destination), (Some(s), Some(d)) if s == d.blob_id());
        Caller {
            re_encrypt_on_same_key: Some(same),
            ..caller.clone()
        }
    }

    /// `ReEncrypt`'s destination key, checked: the caller may `ReEncryptTo` it with this
    /// context and algorithm, and it is a usable symmetric encryption key (`SYMMETRIC_DEFAULT`)
    /// or RSA encryption key (`RSAES_OAEP_*`).
    pub(super) async fn re_encrypt_destination(
        &self,
        caller: &Caller,
        destination_key_id: &str,
        destination_ctx: &Context,
        algorithm: EncryptionAlgorithmSpec,
    ) -> Result<Destination> {
        if algorithm != EncryptionAlgorithmSpec::SymmetricDefault {
            return Ok(Destination::Rsa(
                self.rsa_key_for(
                    caller,
                    destination_key_id,
                    "kms:ReEncryptTo",
                    destination_ctx,
                    algorithm,
                    "ReEncrypt",
                )
                .await?,
            ));
        }
        let access = Access::to(
            "kms:ReEncryptTo",
            &[Check::Enabled, Check::Symmetric("ReEncrypt")],
        )
        .context(destination_ctx);
        let dest = self.key_for(caller, destination_key_id, access).await?;
        Ok(Destination::Symmetric(dest))
    }

    /// `ReEncrypt` with `DryRun` and `IGNORE_CIPHERTEXT`: both keys' checks, no ciphertext.
    pub async fn dry_run_re_encrypt_without_ciphertext(
        &self,
        caller: &Caller,
        source: ReEncryptEnd<'_>,
        destination: ReEncryptEnd<'_>,
    ) -> Result<()> {
        let from = self
            .resolve_unnoted(caller, source.key_id, "kms:ReEncryptFrom")
            .await
            .ok();
        let caller = &self
            .re_encrypting(caller, from.map(|r| r.blob_id()), destination.key_id)
            .await;
        match self
            .dry_run_without_ciphertext(
                caller,
                "kms:ReEncryptFrom",
                source.key_id,
                source.ctx,
                source.algorithm,
            )
            .await
        {
            Err(KmsError::DryRun) => {}
            other => return other,
        }
        self.re_encrypt_destination(
            caller,
            destination.key_id,
            destination.ctx,
            destination.algorithm,
        )
        .await?;
        Err(KmsError::DryRun)
    }

    /// `ReEncrypt`: decrypt under the source key (symmetric, or RSA with `SourceKeyId`) and
    /// encrypt under the destination key (symmetric or RSA); the plaintext never leaves the
    /// service. The source is checked first, as AWS does (recorded: a wrong `SourceKeyId` is
    /// `IncorrectKeyException` even when the destination is unusable too).
    #[allow(clippy::too_many_arguments)]
    pub async fn re_encrypt(
        &self,
        caller: &Caller,
        blob: &[u8],
        source_key_id: Option<&str>,
        source_ctx: &Context,
        source_algorithm: EncryptionAlgorithmSpec,
        destination: ReEncryptEnd<'_>,
        dry_run: bool,
    ) -> Result<ReEncryptOutput> {
        let source = match (source_algorithm, source_key_id) {
            (EncryptionAlgorithmSpec::SymmetricDefault, _) => ciphertext::Outer::parse(blob)
                .map(|o| o.key_id)
                .or_else(|| ciphertext::parse(blob).map(|(h, _)| h.key_id)),
            (_, Some(id)) => self
                .resolve_unnoted(caller, id, "kms:ReEncryptFrom")
                .await
                .ok()
                .map(|r| r.blob_id()),
            (_, None) => None,
        };
        let caller = &self.re_encrypting(caller, source, destination.key_id).await;
        let (source_key_arn, plaintext) =
            if source_algorithm == EncryptionAlgorithmSpec::SymmetricDefault {
                let (src, plaintext) = self
                    .open(caller, "kms:ReEncryptFrom", blob, source_ctx, source_key_id)
                    .await?;
                (src.arn(), plaintext)
            } else {
                // An asymmetric ciphertext does not name its key.
                let Some(id) = source_key_id else {
                    return Err(KmsError::Validation(format!(
                    "SourceKeyId is required when SourceEncryptionAlgorithm is {source_algorithm}."
                )));
                };
                let key = self
                    .rsa_key_for(
                        caller,
                        id,
                        "kms:ReEncryptFrom",
                        source_ctx,
                        source_algorithm,
                        "ReEncrypt",
                    )
                    .await?;
                (key.rec.arn(), self.rsa_decrypt(&key, blob).await?)
            };
        let dest = self
            .re_encrypt_destination(
                caller,
                destination.key_id,
                destination.ctx,
                destination.algorithm,
            )
            .await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let (blob, key_arn) = match &dest {
            Destination::Symmetric(rec) => (
                self.seal(caller, rec, plaintext, destination.ctx).await?,
                rec.arn(),
            ),
            Destination::Rsa(key) => (self.rsa_encrypt(key, &plaintext).await?, key.rec.arn()),
        };
        Ok(ReEncryptOutput {
            blob,
            source_key_arn,
            key_arn,
        })
    }

    /// A data key from the token's RNG, encrypted under the KMS key. The plaintext is returned
    /// to the caller (when asked for) and forgotten.
    #[allow(clippy::too_many_arguments)]
    pub async fn generate_data_key(
        &self,
        caller: &Caller,
        action: &str,
        key_id: &str,
        bytes: usize,
        ctx: &Context,
        dry_run: bool,
    ) -> Result<DataKeyOutput> {
        // The key-usage error names the operation called, as AWS's does.
        let op = match action {
            "kms:GenerateDataKeyWithoutPlaintext" => "GenerateDataKeyWithoutPlaintext",
            _ => "GenerateDataKey",
        };
        let checks = [Check::Enabled, Check::Symmetric(op)];
        let access = Access::to(action, &checks).context(ctx);
        let rec = self.key_for(caller, key_id, access).await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let plaintext = self.hsm.random(bytes).await?;
        let blob = self
            .seal(caller, &rec, Zeroizing::new(plaintext.to_vec()), ctx)
            .await?;
        Ok(DataKeyOutput {
            blob,
            plaintext,
            key_arn: rec.arn(),
        })
    }

    pub async fn generate_random(
        &self,
        caller: &Caller,
        bytes: usize,
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.authorize(caller, "kms:GenerateRandom", None, None, &[])
            .await?;
        Ok(self.hsm.random(bytes).await?)
    }
}
