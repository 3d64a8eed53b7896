//! The fixture behind the stateful cargo-fuzz targets (`fuzz/`), compiled only with
//! `--cfg fuzzing`. It opens the real service — a SoftHSM2 token and a Postgres database that
//! `scripts/fuzz.sh` initialised, configured by the usual `KMS_*` variables — so the targets
//! exercise exactly the code a request runs, with no mock in between.

use crate::api::error::ApiError;
use crate::domain::{Caller, Kms, KmsError};
use crate::store::{KeyRecord, MaterialRecord};
use std::sync::{Arc, OnceLock};

pub struct Fixture {
    pub rt: tokio::runtime::Runtime,
    pub kms: Arc<Kms>,
    pub caller: Caller,
    pub regions: Vec<String>,
    pub access_key_id: String,
    pub secret: String,
    /// A symmetric key's record and material row, as stored.
    pub row: (KeyRecord, MaterialRecord),
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// Aliases the seed corpus names, created once per fuzzing database.
const KEYS: &[(&str, &str)] = &[
    ("alias/fuzz", r#"{}"#),
    (
        "alias/fuzz-hmac",
        r#"{"KeySpec":"HMAC_256","KeyUsage":"GENERATE_VERIFY_MAC"}"#,
    ),
    (
        "alias/fuzz-ec",
        r#"{"KeySpec":"ECC_NIST_P256","KeyUsage":"SIGN_VERIFY"}"#,
    ),
    (
        "alias/fuzz-ecdh",
        r#"{"KeySpec":"ECC_NIST_P256","KeyUsage":"KEY_AGREEMENT"}"#,
    ),
    (
        "alias/fuzz-rsa",
        r#"{"KeySpec":"RSA_2048","KeyUsage":"ENCRYPT_DECRYPT"}"#,
    ),
];

pub fn fixture() -> &'static Fixture {
    FIXTURE.get_or_init(|| {
        let settings = crate::config::Settings::load(None).expect("KMS_* settings");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (kms, row) = rt.block_on(async {
            let store = crate::server::wiring::connect_store(&settings)
                .await
                .expect("database");
            let kms = Arc::new(
                crate::server::wiring::open_kms(&settings, store)
                    .await
                    .expect("token"),
            );
            let caller = admin(&settings);
            let mut first = None;
            for (alias, body) in KEYS {
                let existing = crate::api::ops::dispatch(
                    "DescribeKey",
                    &kms,
                    &caller,
                    format!(r#"{{"KeyId":"{alias}"}}"#).as_bytes(),
                )
                .await;
                let id = match existing {
                    Ok(v) => v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string(),
                    Err(_) => {
                        let v =
                            crate::api::ops::dispatch("CreateKey", &kms, &caller, body.as_bytes())
                                .await
                                .expect("CreateKey");
                        let id = v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
                        crate::api::ops::dispatch(
                            "CreateAlias",
                            &kms,
                            &caller,
                            format!(r#"{{"AliasName":"{alias}","TargetKeyId":"{id}"}}"#).as_bytes(),
                        )
                        .await
                        .expect("CreateAlias");
                        id
                    }
                };
                first.get_or_insert(id);
            }
            let id = uuid::Uuid::parse_str(&first.unwrap()).unwrap();
            let row = kms.fuzz_row(id).await;
            (kms, row)
        });
        Fixture {
            rt,
            kms,
            caller: admin(&settings),
            regions: settings.regions.clone(),
            access_key_id: std::env::var("KMS_ADMIN_ACCESS_KEY_ID").unwrap_or_default(),
            secret: std::env::var("KMS_ADMIN_SECRET_ACCESS_KEY").unwrap_or_default(),
            row,
        }
    })
}

fn admin(s: &crate::config::Settings) -> Caller {
    Caller {
        account_id: s.account_id.clone(),
        principal_arn: crate::domain::operator::admin_arn(&s.account_id),
        region: s.regions[0].clone(),
        source_ip: Some("127.0.0.1".into()),
        grant_tokens: vec![],
        role_arn: None,
        request_alias: None,
        access_key_id: std::env::var("KMS_ADMIN_ACCESS_KEY_ID").unwrap_or_default(),
        secure_transport: true,
        re_encrypt_on_same_key: None,
    }
}

impl Fixture {
    /// One operation, decoded, validated and run as `principal_arn` of the fixture's account
    /// (a principal with no identity policy: only grants can allow it anything).
    pub fn dispatch_as(
        &self,
        principal_arn: &str,
        op: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, ApiError> {
        let caller = Caller {
            principal_arn: principal_arn.to_string(),
            access_key_id: String::new(),
            ..self.caller.clone()
        };
        self.rt
            .block_on(crate::api::ops::dispatch(op, &self.kms, &caller, body))
    }

    /// The grants of a key as stored (verified), for checking what a grantee created.
    pub fn grants_of(&self, key_id: &str) -> Vec<crate::store::GrantRecord> {
        let v = self
            .dispatch(
                "ListGrants",
                format!(r#"{{"KeyId":"{key_id}"}}"#).as_bytes(),
            )
            .expect("ListGrants");
        let mut out = Vec::new();
        for g in v["Grants"].as_array().cloned().unwrap_or_default() {
            out.push(crate::store::GrantRecord {
                grant_id: g["GrantId"].as_str().unwrap_or_default().into(),
                key_id: uuid::Uuid::nil(),
                name: g["Name"].as_str().map(str::to_string),
                grantee_principal: g["GranteePrincipal"].as_str().unwrap_or_default().into(),
                retiring_principal: g["RetiringPrincipal"].as_str().map(str::to_string),
                operations: g["Operations"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|o| o.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                constraints: g.get("Constraints").cloned(),
                issuing_account: String::new(),
                created_at: chrono::Utc::now(),
                mac: vec![],
            });
        }
        out
    }

    /// An administrator's change to a principal, through the same guarded path as `kms admin`.
    pub fn change_principal(
        &self,
        arn: &str,
        change: &crate::store::PrincipalChange,
    ) -> Result<(), KmsError> {
        self.rt.block_on(self.kms.change_principal(arn, change))
    }

    /// A principal's authorization data as stored now, and whether its MAC holds.
    pub fn principal(&self, arn: &str) -> Option<(crate::store::PrincipalAuthz, bool)> {
        self.rt.block_on(self.kms.fuzz_principal(arn))
    }

    /// One operation, decoded, validated and run as the administrator.
    pub fn dispatch(&self, op: &str, body: &[u8]) -> Result<serde_json::Value, ApiError> {
        self.rt
            .block_on(crate::api::ops::dispatch(op, &self.kms, &self.caller, body))
    }

    /// SigV4 verification of a request against the real credential store.
    pub fn verify(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &hyper::HeaderMap,
        body: &[u8],
    ) -> Result<(), ApiError> {
        self.rt
            .block_on(crate::api::sigv4::verify(
                &self.kms.credentials,
                "kms",
                &self.regions,
                method,
                path,
                query,
                headers,
                body,
                chrono::Utc::now(),
            ))
            .map(drop)
    }

    /// Load a (possibly altered) copy of the fixture's material row: (altered, outcome).
    pub fn load_row(&self, rec: &KeyRecord, m: &MaterialRecord) -> (bool, Result<(), KmsError>) {
        self.rt
            .block_on(self.kms.fuzz_load_row((&self.row.0, &self.row.1), rec, m))
    }
}
