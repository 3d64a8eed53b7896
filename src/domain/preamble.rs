//! The key preamble: an operation on a key the caller names goes through [`Kms::key_for`],
//! which resolves the name (key id, key ARN or alias) in the caller's account and region,
//! authorizes the action on that key (key policy, identity policies and grants, with the
//! operation's encryption context and condition keys), then runs the operation's checks of the
//! key's state, usage, spec and origin in the order the operation lists them.
//!
//! Authorization comes first, as on AWS: a caller without permission learns nothing of the
//! key's state. Every operation states its checks in its [`Access`] (an empty list,
//! [`ANY_STATE`], says on purpose that the operation works in every state), so a check cannot
//! be left out by forgetting a line. The few operations that authorize in their own way
//! (CreateGrant limits what a grant may create) run the same checks through [`Kms::check`]; a
//! key found another way than by the caller's name for it (Decrypt's, in the ciphertext) goes
//! through [`Kms::admit`].

use super::*;
use crate::messages;

/// One thing an operation needs of its key (AWS's key-state table, and the key types each
/// operation takes). The checks run in the order an [`Access`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Enabled (cryptographic operations): `DisabledException` for a disabled key,
    /// `KMSInvalidStateException` for every other state.
    Enabled,
    /// Enabled or disabled: not pending deletion, import or replica deletion.
    NotPending,
    /// Aliases, tags, descriptions and grants: as AWS's key-state table has them, enabled,
    /// disabled or waiting for imported material, never pending deletion.
    Manageable,
    /// A symmetric encryption key (`SYMMETRIC_DEFAULT`, `ENCRYPT_DECRYPT`); the operation's
    /// name, for AWS's message.
    Symmetric(&'static str),
    /// Automatic and on-demand rotation: a symmetric key with material the service generated,
    /// a multi-Region primary or a single-Region key, enabled; the operation's name, for AWS's
    /// message about a replica.
    Rotatable(&'static str),
    /// `RotateKeyOnDemand`: as [`Check::Rotatable`], and a symmetric key with imported
    /// material too (it rotates to material imported for the purpose).
    OnDemandRotatable,
    /// Imported key material: origin `EXTERNAL`.
    External,
    /// A multi-Region primary key.
    Primary,
    /// `UpdatePrimaryRegion`'s key: a multi-Region primary (AWS answers a replica
    /// `KMSInvalidStateException`, where ReplicateKey's answer is
    /// `UnsupportedOperationException`; recorded).
    MovablePrimary,
}

/// Every state: reads and listings (DescribeKey, GetKeyPolicy, ListGrants, ListResourceTags…).
pub(crate) const ANY_STATE: &[Check] = &[];

/// What an operation asks of the key it names: the action it is authorized as, the encryption
/// context and condition keys the policies see, and the checks of the key that follow.
pub(crate) struct Access<'a> {
    action: &'a str,
    ctx: Option<&'a Context>,
    conditions: &'a [(&'a str, &'a str)],
    multi: &'a [(&'a str, &'a [String])],
    checks: &'a [Check],
}

impl<'a> Access<'a> {
    /// `action` (`kms:Encrypt`…) on a key that must pass `checks`.
    pub(crate) fn to(action: &'a str, checks: &'a [Check]) -> Self {
        Access {
            action,
            ctx: None,
            conditions: &[],
            multi: &[],
            checks,
        }
    }

    /// The request's encryption context (`kms:EncryptionContext:` conditions, grant
    /// constraints).
    pub(crate) fn context(self, ctx: &'a Context) -> Self {
        Access {
            ctx: Some(ctx),
            ..self
        }
    }

    /// The operation's condition keys (`kms:SigningAlgorithm`…).
    pub(crate) fn conditions(self, conditions: &'a [(&'a str, &'a str)]) -> Self {
        Access { conditions, ..self }
    }

    /// The operation's multi-valued condition keys (`aws:TagKeys`).
    pub(crate) fn multi(self, multi: &'a [(&'a str, &'a [String])]) -> Self {
        Access { multi, ..self }
    }
}

impl Kms {
    /// The key `key_id` names, once the caller may perform `access`'s action on it and it
    /// passes `access`'s checks.
    pub(crate) async fn key_for(
        &self,
        caller: &Caller,
        key_id: &str,
        access: Access<'_>,
    ) -> Result<Arc<KeyRecord>> {
        let rec = self.resolve(caller, key_id, access.action).await?;
        self.admit(caller, &rec, access).await?;
        Ok(rec)
    }

    /// [`Kms::key_for`] for a key found another way (named by a ciphertext, by an alias being
    /// changed, in another Region): the caller may perform `access`'s action on it and it
    /// passes `access`'s checks.
    pub(crate) async fn admit(
        &self,
        caller: &Caller,
        rec: &KeyRecord,
        access: Access<'_>,
    ) -> Result<()> {
        self.authorize_with(
            caller,
            access.action,
            Some(rec),
            access.ctx,
            access.conditions,
            access.multi,
            None,
        )
        .await?;
        Self::check(rec, access.checks)
    }

    /// Run `checks` on a key already resolved and authorized, in order.
    pub(crate) fn check(rec: &KeyRecord, checks: &[Check]) -> Result<()> {
        for c in checks {
            match *c {
                Check::Enabled => enabled(rec)?,
                Check::NotPending => not_pending(rec)?,
                Check::Manageable => {
                    if rec.key_state != KeyState::PendingImport {
                        not_pending(rec)?
                    }
                }
                Check::Symmetric(op) => symmetric(rec, op)?,
                Check::Rotatable(op) => rotatable(rec, false, op)?,
                Check::OnDemandRotatable => rotatable(rec, true, "RotateKeyOnDemand")?,
                Check::External => external(rec)?,
                Check::Primary => primary(rec)?,
                Check::MovablePrimary => match (rec.mrk_id, rec.mrk_primary) {
                    (Some(_), false) => {
                        return Err(KmsError::InvalidState(format!(
                            "{} is not a multi-Region primary key.",
                            rec.arn()
                        )))
                    }
                    _ => primary(rec)?,
                },
            }
        }
        Ok(())
    }
}

fn enabled(rec: &KeyRecord) -> Result<()> {
    match rec.key_state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(KmsError::Disabled(messages::key_state(
            &rec.arn(),
            &KeyState::Disabled.words(),
        ))),
        other => Err(KmsError::InvalidState(messages::key_state(
            &rec.arn(),
            &other.words(),
        ))),
    }
}

fn not_pending(rec: &KeyRecord) -> Result<()> {
    match rec.key_state {
        KeyState::Enabled | KeyState::Disabled => Ok(()),
        other => Err(KmsError::InvalidState(messages::key_state(
            &rec.arn(),
            &other.words(),
        ))),
    }
}

fn symmetric(rec: &KeyRecord, op: &str) -> Result<()> {
    if rec.key_usage == ENCRYPT_DECRYPT
        && rec.key_spec != KeySpec::SymmetricDefault
        && op.starts_with("GenerateDataKeyPair")
    {
        // Recorded, in these words.
        return Err(KmsError::InvalidKeyUsage(
            "You cannot generate a data key pair with an asymmetric CMK".into(),
        ));
    }
    if rec.key_usage == ENCRYPT_DECRYPT
        && rec.key_spec != KeySpec::SymmetricDefault
        && op.starts_with("GenerateDataKey")
    {
        // Recorded by a client against AWS, in these words (no final period).
        return Err(KmsError::InvalidKeyUsage(
            "You cannot generate a data key with an asymmetric CMK".into(),
        ));
    }
    if rec.key_usage == ENCRYPT_DECRYPT && rec.key_spec != KeySpec::SymmetricDefault {
        // AWS's wording for an RSA key asked for SYMMETRIC_DEFAULT.
        return Err(KmsError::InvalidKeyUsage(messages::algorithm_incompatible(
            "SYMMETRIC_DEFAULT",
            rec.key_spec.as_str(),
        )));
    }
    if rec.key_usage != ENCRYPT_DECRYPT || rec.key_spec != KeySpec::SymmetricDefault {
        return Err(KmsError::InvalidKeyUsage(messages::usage_not_valid(
            &rec.arn(),
            rec.key_usage.as_str(),
            op,
        )));
    }
    Ok(())
}

fn rotatable(rec: &KeyRecord, on_demand: bool, op: &str) -> Result<()> {
    // Automatic rotation of imported material: refused for its origin in every state (AWS's
    // key-state table: "origin is EXTERNAL which is not valid for this operation" for a key
    // pending import too).
    if !on_demand && rec.origin == Origin::External {
        return Err(KmsError::UnsupportedOperation(messages::origin_not_valid(
            &rec.arn(),
            rec.origin.as_str(),
        )));
    }
    // Otherwise the state first: AWS answers a disabled RSA key's RotateKeyOnDemand with
    // DisabledException (recorded), not with the spec's UnsupportedOperationException.
    enabled(rec)?;
    let imported = on_demand && rec.origin == Origin::External;
    if rec.origin != Origin::AwsKms && !imported {
        // Automatic rotation is for material the service generated (recorded: AWS's answer
        // to EnableKeyRotation on an EXTERNAL key).
        return Err(KmsError::UnsupportedOperation(messages::origin_not_valid(
            &rec.arn(),
            rec.origin.as_str(),
        )));
    }
    if rec.key_spec != KeySpec::SymmetricDefault {
        // AWS sends no message (recorded: RotateKeyOnDemand on an RSA key).
        return Err(KmsError::UnsupportedOperation(String::new()));
    }
    if rec.mrk_id.is_some() && !rec.mrk_primary {
        // Recorded, in these words (lower-case "region").
        return Err(KmsError::UnsupportedOperation(format!(
            "{} is a multi-region replica key which is not valid for {op}.",
            rec.arn()
        )));
    }
    Ok(())
}

fn external(rec: &KeyRecord) -> Result<()> {
    if rec.origin != Origin::External {
        return Err(KmsError::UnsupportedOperation(messages::origin_not_valid(
            &rec.arn(),
            rec.origin.as_str(),
        )));
    }
    Ok(())
}

fn primary(rec: &KeyRecord) -> Result<()> {
    match (rec.mrk_id, rec.mrk_primary) {
        (Some(_), true) => Ok(()),
        (Some(_), false) => Err(KmsError::UnsupportedOperation(
            messages::not_multi_region_primary(&rec.arn()),
        )),
        (None, _) => Err(KmsError::UnsupportedOperation(format!(
            "{} is not a multi-Region key.",
            rec.arn()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::key_rec;

    fn with(state: &str, f: impl FnOnce(&mut KeyRecord)) -> KeyRecord {
        let mut r = key_rec(Uuid::new_v4(), "eu-west-1");
        r.key_state = state.parse().unwrap();
        f(&mut r);
        r
    }

    /// The error kind each check gives, `ok` when it passes.
    fn kind(rec: &KeyRecord, checks: &[Check]) -> &'static str {
        match Kms::check(rec, checks) {
            Ok(()) => "ok",
            Err(KmsError::Disabled(_)) => "Disabled",
            Err(KmsError::InvalidState(_)) => "InvalidState",
            Err(KmsError::InvalidKeyUsage(_)) => "InvalidKeyUsage",
            Err(KmsError::UnsupportedOperation(_)) => "UnsupportedOperation",
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    #[test]
    fn each_check_follows_the_key_state_table() {
        let states = [
            "Enabled",
            "Disabled",
            "PendingImport",
            "PendingDeletion",
            "PendingReplicaDeletion",
        ];
        let want: [(Check, [&str; 5]); 3] = [
            (
                Check::Enabled,
                [
                    "ok",
                    "Disabled",
                    "InvalidState",
                    "InvalidState",
                    "InvalidState",
                ],
            ),
            (
                Check::NotPending,
                ["ok", "ok", "InvalidState", "InvalidState", "InvalidState"],
            ),
            (
                Check::Manageable,
                ["ok", "ok", "ok", "InvalidState", "InvalidState"],
            ),
        ];
        for (check, kinds) in want {
            for (state, k) in states.iter().zip(kinds) {
                assert_eq!(
                    kind(&with(state, |_| ()), &[check]),
                    k,
                    "{check:?} on {state}"
                );
            }
        }
        assert_eq!(kind(&with("PendingDeletion", |_| ()), ANY_STATE), "ok");
    }

    #[test]
    fn usage_spec_and_origin_checks_name_what_is_wrong() {
        let rsa = |r: &mut KeyRecord| r.key_spec = KeySpec::Rsa2048;
        let hmac = |r: &mut KeyRecord| {
            r.key_spec = KeySpec::Hmac256;
            r.key_usage = KeyUsage::GenerateVerifyMac;
        };
        let e = Kms::check(&with("Enabled", rsa), &[Check::Symmetric("Encrypt")]).unwrap_err();
        assert!(
            format!("{e:?}").contains("incompatible with key spec RSA_2048"),
            "{e:?}"
        );
        let e = Kms::check(&with("Enabled", hmac), &[Check::Symmetric("Encrypt")]).unwrap_err();
        assert!(format!("{e:?}").contains("GENERATE_VERIFY_MAC which is not valid for Encrypt"));
        assert_eq!(
            kind(
                &with("Enabled", rsa),
                &[Check::Rotatable("EnableKeyRotation")]
            ),
            "UnsupportedOperation"
        );
        assert_eq!(
            kind(
                &with("Disabled", |_| ()),
                &[Check::Rotatable("EnableKeyRotation")]
            ),
            "Disabled"
        );
        assert_eq!(
            kind(
                &with("Disabled", rsa),
                &[Check::Rotatable("EnableKeyRotation")]
            ),
            "Disabled"
        );
        assert_eq!(
            kind(&with("Enabled", |_| ()), &[Check::External]),
            "UnsupportedOperation"
        );
        let external = |r: &mut KeyRecord| r.origin = Origin::External;
        assert_eq!(
            kind(&with("PendingImport", external), &[Check::External]),
            "ok"
        );
        // ReplicateKey of a primary still pending import: refused (recorded).
        assert_eq!(
            kind(&with("PendingImport", external), &[Check::NotPending]),
            "InvalidState"
        );
    }

    #[test]
    fn checks_run_in_the_order_the_operation_lists_them() {
        // A disabled multi-Region replica: UpdatePrimaryRegion names it a replica first.
        let replica = with("Disabled", |r| {
            r.mrk_id = Some(Uuid::new_v4());
            r.mrk_primary = false;
        });
        assert_eq!(
            kind(&replica, &[Check::Primary, Check::Enabled]),
            "UnsupportedOperation"
        );
        assert_eq!(
            kind(&replica, &[Check::Enabled, Check::Primary]),
            "Disabled"
        );
        let primary = with("Enabled", |r| {
            r.mrk_id = Some(Uuid::new_v4());
            r.mrk_primary = true;
        });
        assert_eq!(kind(&primary, &[Check::Primary, Check::Enabled]), "ok");
    }
}
