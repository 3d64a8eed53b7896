//! AWS managed keys (`alias/aws/<service>`): created on first use by an integrated service,
//! with the key policy AWS gives them.

use super::Kms;
use crate::domain::Result;
use crate::store::{AliasRecord, KeyRecord, StoreError};
use uuid::Uuid;

/// Services whose AWS managed key (`alias/aws/<service>`) is created on first use.
pub const MANAGED_KEY_SERVICES: &[&str] = &[
    "acm",
    "backup",
    "cloudtrail",
    "codecommit",
    "dynamodb",
    "ebs",
    "ecr",
    "elasticfilesystem",
    "es",
    "fsx",
    "glue",
    "kafka",
    "kinesis",
    "lambda",
    "lightsail",
    "logs",
    "rds",
    "redshift",
    "s3",
    "secretsmanager",
    "sns",
    "sqs",
    "ssm",
    "xray",
];

/// How AWS names a service in its managed key's policy and description: the name in the
/// policy's first `Sid`, the short name after it, and what the key protects. Recorded for SQS
/// (radkawar/stackd `testdata/aws/kms/rotation.json`, `managed_sqs_policy` and the key's
/// description); the other services take their short name and "data" (not recorded).
fn service_names(service: &str) -> (String, String, String) {
    match service {
        "sqs" => (
            "Simple Queue Service (SQS)".into(),
            "SQS".into(),
            "SQS messages".into(),
        ),
        other => {
            let short = other.to_uppercase();
            (short.clone(), short.clone(), format!("{short} data"))
        }
    }
}

/// AWS's key policy for an AWS managed key, to the byte as AWS writes it (pretty-printed):
/// the service may use it on behalf of principals of the account (`kms:ViaService`), and the
/// account may only read its metadata and revoke grants. Everything else (disabling,
/// deleting, re-policing, re-aliasing, rotation changes) is refused by it.
pub fn managed_key_policy(account: &str, region: &str, service: &str) -> String {
    let (long, short, _) = service_names(service);
    format!(
        "{{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"auto-{service}-1\",\n  \"Statement\" : [ {{\n    \"Sid\" : \"Allow access through {long} for all principals in the account that are authorized to use {short}\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{\n      \"AWS\" : \"*\"\n    }},\n    \"Action\" : [ \"kms:Encrypt\", \"kms:Decrypt\", \"kms:ReEncrypt*\", \"kms:GenerateDataKey*\", \"kms:CreateGrant\", \"kms:DescribeKey\" ],\n    \"Resource\" : \"*\",\n    \"Condition\" : {{\n      \"StringEquals\" : {{\n        \"kms:ViaService\" : \"{service}.{region}.amazonaws.com\",\n        \"kms:CallerAccount\" : \"{account}\"\n      }}\n    }}\n  }}, {{\n    \"Sid\" : \"Allow direct access to key metadata to the account\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{\n      \"AWS\" : \"arn:aws:iam::{account}:root\"\n    }},\n    \"Action\" : [ \"kms:Describe*\", \"kms:Get*\", \"kms:List*\", \"kms:RevokeGrant\" ],\n    \"Resource\" : \"*\"\n  }} ]\n}}"
    )
}

impl Kms {
    /// The AWS managed key behind `alias/aws/<service>`, created on first use (as AWS's
    /// DescribeKey does for a predefined alias with no key yet).
    pub(super) async fn managed_key(
        &self,
        account: &str,
        region: &str,
        name: &str,
    ) -> Result<Option<Uuid>> {
        let Some(service) = name.strip_prefix("alias/aws/") else {
            return Ok(None);
        };
        if !MANAGED_KEY_SERVICES.contains(&service) {
            return Ok(None);
        }
        let now = self.now();
        // As recorded on AWS (a new `alias/aws/sqs` key): GetKeyRotationStatus answers
        // rotation off, with no period or next date.
        let mut rec = KeyRecord {
            description: format!(
                "Default key that protects my {} when no other key is defined",
                service_names(service).2
            ),
            key_manager: "AWS".into(),
            ..self.new_record(
                account,
                region,
                managed_key_policy(account, region, service),
            )
        };
        let key_id = rec.key_id;
        self.seal_new_key(&mut rec, &[]).await?;
        // Symmetric: no held object.
        let (m, _) = self.new_material(&rec, 1).await?;
        let mut alias = AliasRecord {
            alias_name: name.to_string(),
            key_id,
            account_id: account.to_string(),
            region: region.to_string(),
            created_at: now,
            updated_at: now,
            target_mrk: None,
            mac: vec![],
        };
        let alias_seal = self
            .seal_row(
                super::seal::alias_row(&alias),
                super::alias_mac_input(&alias),
                None,
            )
            .await?;
        alias.mac = alias_seal.mac.clone();
        let aliases = self
            .seal_new_alias_set(&mut rec, &[(name.to_string(), alias_seal.generation)])
            .await?;
        match self.keys.create_managed_key(&rec, &m, &alias).await {
            Ok(()) => {
                self.written(&alias_seal);
                self.written(&aliases);
                tracing::info!(%key_id, alias = name, "AWS managed key created on first use");
                self.invalidate_aliases();
                Ok(Some(key_id))
            }
            // Another request created it first: use that one.
            Err(StoreError::Conflict { .. }) => {
                self.invalidate_aliases();
                match self.keys.alias(account, region, name).await? {
                    Some(a) => Ok(self.verified_alias(a).await?.map(|a| a.key_id)),
                    None => Ok(None),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}
