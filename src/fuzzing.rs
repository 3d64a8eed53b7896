//! The fixture behind the stateful cargo-fuzz targets (`fuzz/`), compiled only with
//! `--cfg fuzzing`. It opens the real service — a SoftHSM2 token and a Postgres database that
//! `scripts/fuzz.sh` initialised, configured by the usual `KMS_*` variables — so the targets
//! exercise exactly the code a request runs, with no mock in between.

use crate::api::error::ApiError;
use crate::kms::{Caller, Kms, KmsError};
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
            let store = crate::app::connect_store(&settings)
                .await
                .expect("database");
            let kms = Arc::new(crate::app::open_kms(&settings, store).await.expect("token"));
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
        principal_arn: crate::app::admin_arn(&s.account_id),
        region: s.regions[0].clone(),
        source_ip: Some("127.0.0.1".into()),
        grant_tokens: vec![],
        role_arn: None,
        request_alias: None,
        access_key_id: std::env::var("KMS_ADMIN_ACCESS_KEY_ID").unwrap_or_default(),
        secure_transport: true,
    }
}

impl Fixture {
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
