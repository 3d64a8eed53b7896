//! SigV4 credentials. A secret access key is stored only as the generic secret
//! `"AWS4" || secret`, wrapped by the HSM; the first HMAC of the SigV4 key derivation (over the
//! date) runs inside the token, and the resulting day-scoped signing key is cached in memory.

use super::{mac_input, KmsError};
use crate::domain::Result;
use crate::hsm::Hsm;
use crate::store::{AccessKeyRecord, IdentityStore, KeyStore};
use aws_lc_rs::hmac;
use base64::Engine;
use lru::LruCache;
use secrecy::{ExposeSecret, SecretString};
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// A day-, region- and service-scoped SigV4 signing key and whose it is.
pub struct SigningKey {
    key: hmac::Key,
    pub access_key_id: String,
    pub principal_arn: String,
    pub account_id: String,
    /// For an assumed-role session: the role, and what its session token must hash to.
    pub role_arn: Option<String>,
    pub session: Option<SessionCheck>,
}

pub struct SessionCheck {
    pub token_sha256: Vec<u8>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Temporary credentials handed out by `AssumeRole`; the secret and token are shown once.
pub struct IssuedSession {
    pub access_key_id: String,
    pub secret: SecretString,
    pub token: SecretString,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub assumed_role_arn: String,
    pub assumed_role_id: String,
}

impl SigningKey {
    /// HMAC-SHA256 of a string to sign under this key.
    /// Who the trail says signed with it.
    pub fn identity(&self) -> crate::audit::Identity {
        let (p, a, k) = (&self.principal_arn, &self.account_id, &self.access_key_id);
        crate::audit::Identity::of(p, a, k, self.role_arn.as_ref())
    }

    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key, data).as_ref().to_vec()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A role the caller may assume, as its trust policy was verified.
#[derive(Debug)]
pub struct AssumableRole {
    pub account_id: String,
    /// The generation of the role's sealed authorization: a session is issued under it.
    pub generation: i64,
}

#[derive(Debug)]
pub enum CredentialError {
    /// No such access key, or it is not active.
    Unrecognized,
    Failed(KmsError),
}

/// A store or token failure on the way to a signing key fails the request (it says nothing of
/// the key).
impl<E: Into<KmsError>> From<E> for CredentialError {
    fn from(e: E) -> CredentialError {
        CredentialError::Failed(e.into())
    }
}

/// What a SigV4 signing key is for: an access key on a date (YYYYMMDD), in a region, for a
/// service. The signing key cache's key.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Scope {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
}

pub struct Credentials {
    hsm: Hsm,
    ids: Arc<dyn IdentityStore>,
    /// The generations the audit trail holds (a role's sessions ended).
    trail: Arc<dyn KeyStore>,
    cache: Mutex<super::cache::Cache<Scope, Arc<SigningKey>>>,
    /// Access key ids recently found unknown (or inactive, or refused), and when: answered
    /// without a query for `NEGATIVE_TTL`, or until any identity changes (NOTIFY).
    unknown: Mutex<LruCache<String, std::time::Instant>>,
    /// The audit public key (SubjectPublicKeyInfo DER), read from the token once: the trail's
    /// seals verify with it ([`Credentials::audit_public_key`]).
    audit_public_key: tokio::sync::OnceCell<Vec<u8>>,
}

/// How long an unknown access key id is answered from memory.
const NEGATIVE_TTL: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn session_mac_input(r: &crate::store::SessionRecord) -> Vec<u8> {
    mac_input(
        "kms.session.v1",
        &[
            r.access_key_id.as_bytes(),
            r.role_arn.as_bytes(),
            r.session_name.as_bytes(),
            &r.root_version.to_be_bytes(),
            &r.token_sha256,
            &r.expires_at.timestamp().to_be_bytes(),
            &r.secret_blob,
        ],
    )
}

/// `arn:aws:iam::<account>:role/<name>` → `<name>`.
fn role_name(arn: &str) -> &str {
    arn.rsplit_once(":role/").map(|(_, n)| n).unwrap_or(arn)
}

pub(super) fn access_key_mac_input(r: &AccessKeyRecord) -> Vec<u8> {
    mac_input(
        "kms.access-key.v1",
        &[
            r.access_key_id.as_bytes(),
            r.principal_arn.as_bytes(),
            r.status.as_bytes(),
            &r.root_version.to_be_bytes(),
            &r.secret_blob,
        ],
    )
}

/// `arn:aws:iam::<account>:user/<name>` → `<account>`.
pub fn account_of_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some("iam"), Some(""), Some(account)) if account.len() == 12 => {
            Some(account)
        }
        _ => None,
    }
}

/// AWS access key ids: 16 to 128 word characters.
pub fn valid_access_key_id(s: &str) -> bool {
    (16..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The HMAC key of a secret's SigV4 derivation: `"AWS4" || secret`, or, when that is longer
/// than SHA-256's block (64 bytes: a secret over 60 characters, such as the 43 to 64 of an
/// XKS proxy credential), its SHA-256 — the key HMAC uses for a long key (RFC 2104 §2), which
/// every token takes (SoftHSM2 does not hash a long HMAC key itself, and signs wrongly with it).
fn signing_secret(secret: &SecretString) -> Zeroizing<Vec<u8>> {
    let mut material = Zeroizing::new(b"AWS4".to_vec());
    material.extend_from_slice(secret.expose_secret().as_bytes());
    if material.len() > 64 {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &material);
        return Zeroizing::new(d.as_ref().to_vec());
    }
    material
}

/// Secrets are 40 characters when AWS issues them; the token's HMAC needs a key of at least 32
/// bytes ("AWS4" plus 28 characters), so shorter ones are refused.
pub fn valid_secret(s: &str) -> bool {
    (28..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Credentials {
    pub fn new(
        hsm: Hsm,
        ids: Arc<dyn IdentityStore>,
        trail: Arc<dyn KeyStore>,
        cache_size: usize,
        max_age: std::time::Duration,
    ) -> Credentials {
        Credentials {
            hsm,
            ids,
            trail,
            cache: Mutex::new(super::cache::Cache::new(super::nz(cache_size), max_age)),
            unknown: Mutex::new(LruCache::new(super::nz(cache_size.max(1024)))),
            audit_public_key: tokio::sync::OnceCell::new(),
        }
    }

    /// The audit public key (SubjectPublicKeyInfo DER) the trail's seals and checkpoints
    /// verify with, read from the token once.
    pub(crate) async fn audit_public_key(&self) -> Result<Vec<u8>, KmsError> {
        let key = self
            .audit_public_key
            .get_or_try_init(|| crate::audit::public_key_der(&self.hsm))
            .await
            .map_err(|e| KmsError::Internal(e.to_string()))?;
        Ok(key.clone())
    }

    /// Forget every cached signing key (an access key was deactivated or deleted) and every
    /// access key id found unknown (one may have been created).
    pub fn invalidate_all(&self) {
        self.cache.lock().unwrap().clear();
        self.unknown.lock().unwrap().clear();
    }

    /// The signing key, or `Unrecognized` from memory for an id found unknown moments ago: a
    /// flood of made-up access key ids costs no query each.
    pub async fn signing_key(
        &self,
        access_key_id: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> Result<Arc<SigningKey>, CredentialError> {
        if !valid_access_key_id(access_key_id) {
            return Err(CredentialError::Unrecognized);
        }
        let scope = Scope {
            access_key_id: access_key_id.to_string(),
            date: date.to_string(),
            region: region.to_string(),
            service: service.to_string(),
        };
        if let Some(k) = self.cache.lock().unwrap().get(&scope) {
            crate::metrics::cache("signing_keys", true);
            return Ok(k.clone());
        }
        crate::metrics::cache("signing_keys", false);
        // Only a request the cache could not serve looks at the ids found unknown.
        if let Some(at) = self.unknown.lock().unwrap().get(access_key_id) {
            if at.elapsed() < NEGATIVE_TTL {
                crate::metrics::cache("unknown_access_keys", true);
                return Err(CredentialError::Unrecognized);
            }
        }
        let r = self.lookup_signing_key(&scope).await;
        if matches!(r, Err(CredentialError::Unrecognized)) {
            self.unknown
                .lock()
                .unwrap()
                .put(access_key_id.to_string(), std::time::Instant::now());
        }
        r
    }

    /// The signing key for `scope`, from the database and the token, kept in the cache.
    async fn lookup_signing_key(&self, scope: &Scope) -> Result<Arc<SigningKey>, CredentialError> {
        let access_key_id = scope.access_key_id.as_str();
        // A change that commits while this is read drops the entry before the read ends:
        // what was read is then not kept (it may be from before the change).
        let drops = self.cache.lock().unwrap().drops();
        let key = if access_key_id.starts_with("ASIA") {
            self.session_signing_key(scope).await?
        } else {
            self.access_key_signing_key(scope).await?
        };
        self.cache
            .lock()
            .unwrap()
            .put_unless_dropped_since(drops, scope.clone(), key.clone());
        Ok(key)
    }

    /// An access key's signing key.
    async fn access_key_signing_key(
        &self,
        scope: &Scope,
    ) -> Result<Arc<SigningKey>, CredentialError> {
        let access_key_id = scope.access_key_id.as_str();
        let rec = self
            .ids
            .access_key(access_key_id)
            .await?
            .ok_or(CredentialError::Unrecognized)?;
        let intact = self
            .hsm
            .row_mac_matches(access_key_mac_input(&rec), &rec.mac)
            .await?;
        if !intact {
            tracing::error!(
                access_key_id,
                "access key row failed its integrity check; refusing it"
            );
            return Err(CredentialError::Unrecognized);
        }
        // The MAC covers the principal's ARN, which names its account; the account column comes
        // from an unauthenticated join, so it must agree with the ARN.
        if account_of_arn(&rec.principal_arn) != Some(rec.account_id.as_str()) {
            tracing::error!(access_key_id, "access key's principal does not belong to the account the database says; refusing it");
            return Err(CredentialError::Unrecognized);
        }
        if rec.status != "Active" {
            return Err(CredentialError::Unrecognized);
        }
        // The trail's word on the key: a key deactivated or deleted there whose Active row is
        // in the database again (saved and put back) is refused, and so is a key hidden from
        // its principal's deletion and put back once a principal of the same name exists
        // again (by the events' hashed bodies, not the rows).
        let ended = self.ids.access_key_ended_per_trail(access_key_id).await?;
        let deleted = (self.ids)
            .principal_deleted_per_trail(&rec.principal_arn)
            .await?;
        if ended.is_some() || deleted.is_some() {
            // Unless the operator's later word, sealed, lets it sign again: an activation or a
            // creation (the same id imported again) after its end, a creation after its
            // principal's deletion. An event without the service's seal permits nothing: a
            // database writer appends one that hashes as chained.
            let public_key = self.audit_public_key().await?;
            let principal = rec.principal_arn.as_str();
            let mut reopened = ended.is_none();
            if let Some(end) = ended {
                let end = self
                    .end_bound(&public_key, end, Ends::Key(access_key_id))
                    .await?;
                for (name, seq) in (self.ids)
                    .access_key_permits_after(access_key_id, end.0, 16)
                    .await?
                {
                    let word = (seq, name.as_str(), access_key_id, principal);
                    if self.permit_sealed(&public_key, word, end).await? {
                        reopened = true;
                        break;
                    }
                }
            }
            if !reopened {
                tracing::error!(
                    access_key_id,
                    ended,
                    "the audit trail records this access key's deactivation or deletion, and no sealed activation or creation after it, but its row says Active (put back in the database?); refusing it"
                );
                return Err(CredentialError::Unrecognized);
            }
            let mut recreated = deleted.is_none();
            if let Some(gone) = deleted {
                let gone = self
                    .end_bound(&public_key, gone, Ends::Principal(principal))
                    .await?;
                let created = self.ids.access_key_created_per_trail(access_key_id).await?;
                if let Some(seq) = created.filter(|c| *c > gone.0) {
                    let word = (seq, "CreateAccessKey", access_key_id, principal);
                    recreated = self.permit_sealed(&public_key, word, gone).await?;
                }
            }
            if !recreated {
                tracing::error!(
                    access_key_id,
                    deleted,
                    "the audit trail records this access key's principal deleted, and no sealed creation of the key after it (its row kept or put back in the database?); refusing it"
                );
                return Err(CredentialError::Unrecognized);
            }
        }
        let key = self
            .derive(rec.secret_blob, rec.root_version, scope)
            .await?;
        Ok(Arc::new(SigningKey {
            key,
            access_key_id: rec.access_key_id,
            principal_arn: rec.principal_arn,
            account_id: rec.account_id,
            role_arn: None,
            session: None,
        }))
    }

    /// What a permit must come after: the latest end (`latest`, by place in the trail) and the
    /// latest time any end's body names, read back to the sixteen newest sealed ends. A sealed
    /// event of the service's moved up the trail (the head's row rewritten, so that it chained
    /// above events it came before) keeps the time it was made, and an end chained below it
    /// since still bounds it by time. An end whose time does not read bounds everything
    /// (`None`: nothing permits). A database writer's ends only ever end more.
    async fn end_bound(
        &self,
        public_key: &[u8],
        latest: i64,
        ends: Ends<'_>,
    ) -> Result<(i64, Option<chrono::DateTime<chrono::Utc>>), CredentialError> {
        let (mut before, mut sealed) = (i64::MAX, 0usize);
        let mut time = Some(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        loop {
            let page = match ends {
                Ends::Key(id) => self.ids.access_key_ends_per_trail(id, before, 64).await?,
                Ends::Principal(arn) => {
                    (self.ids)
                        .principal_deletions_per_trail(arn, before, 64)
                        .await?
                }
            };
            let last_page = page.len() < 64;
            for (seq, body, seal) in page {
                before = seq;
                time = match (time, body_time(&body)) {
                    (Some(t), Some(at)) => Some(t.max(at)),
                    _ => None,
                };
                let genuine =
                    seal.is_some_and(|s| crate::audit::seal_verifies(public_key, seq, &body, &s));
                sealed += usize::from(genuine);
            }
            if sealed >= 16 || last_page {
                return Ok((
                    latest,
                    time.or(Some(chrono::DateTime::<chrono::Utc>::MAX_UTC)),
                ));
            }
        }
    }

    /// Whether `word` (sequence number, name, access key id, principal ARN) is the service's
    /// sealed `ActivateAccessKey` or `CreateAccessKey` of that key (a creation for that
    /// principal), successful, after `end` (a sequence number, and the time of a sealed end).
    async fn permit_sealed(
        &self,
        public_key: &[u8],
        (seq, name, access_key_id, principal): (i64, &str, &str, &str),
        end: (i64, Option<chrono::DateTime<chrono::Utc>>),
    ) -> Result<bool, CredentialError> {
        if seq <= end.0 {
            return Ok(false);
        }
        let Some(row) = crate::audit::sealed_event(self.trail.as_ref(), public_key, seq).await?
        else {
            return Ok(false);
        };
        let body: serde_json::Value = serde_json::from_str(&row.body).unwrap_or_default();
        let text = |p: &str| body.pointer(p).and_then(|v| v.as_str());
        let names_key = match name {
            "CreateAccessKey" => {
                text("/requestParameters/details/access_key_id") == Some(access_key_id)
                    && text("/requestParameters/target") == Some(principal)
            }
            _ => text("/requestParameters/target") == Some(access_key_id),
        };
        let in_time = match (end.1, body_time(&row.body)) {
            (Some(ended), Some(at)) => at >= ended,
            _ => false,
        };
        Ok(body["eventName"] == name && body.get("errorCode").is_none() && names_key && in_time)
    }

    /// The SigV4 key derivation: the first HMAC (over the date) in the token, the rest here.
    async fn derive(
        &self,
        blob: Vec<u8>,
        root_version: i32,
        scope: &Scope,
    ) -> Result<hmac::Key, CredentialError> {
        let secret = self
            .hsm
            .unwrap_key(blob, root_version as u32, crate::hsm::BlobKind::Secret)
            .await?;
        let k_date = self
            .hsm
            .hmac_sha256(secret, scope.date.as_bytes().to_vec())
            .await?;
        let step = |k: &[u8], d: &str| {
            Zeroizing::new(
                hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, k), d.as_bytes())
                    .as_ref()
                    .to_vec(),
            )
        };
        let k_region = step(&k_date, &scope.region);
        let k_service = step(&k_region, &scope.service);
        let k_signing = step(&k_service, "aws4_request");
        Ok(hmac::Key::new(hmac::HMAC_SHA256, &k_signing))
    }

    async fn session_signing_key(&self, scope: &Scope) -> Result<Arc<SigningKey>, CredentialError> {
        let access_key_id = scope.access_key_id.as_str();
        let Some(rec) = self.ids.session(access_key_id).await? else {
            return Err(CredentialError::Unrecognized);
        };
        // The trail's mark of when the role's sessions last ended (the role's generation
        // then), read after the row: a session that ends while the row is read is refused.
        let sessions = super::seal::sessions_row(&rec.role_arn);
        let mut ended = self
            .trail
            .generations_per_trail(std::slice::from_ref(&sessions))
            .await?;
        // And from the hashed bodies of the events that end the role's sessions: the
        // generations index beside the trail is not hashed, and a database writer deletes its
        // entries without breaking the chain.
        // Newest first, down to the sixteen newest the service sealed (ends by several
        // operators may reach the trail out of order): a database writer's events in front of
        // them only ever end more.
        let public_key = self.audit_public_key().await?;
        let (mut before, mut sealed) = (i64::MAX, 0usize);
        'pages: loop {
            let page = (self.ids)
                .principal_changes_per_trail(&rec.role_arn, before, 16)
                .await?;
            let last_page = page.len() < 16;
            for (seq, body, seal) in page {
                before = seq;
                let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                ended.extend(
                    crate::audit::generations_in(&value)
                        .into_iter()
                        .filter(|(row, _)| *row == sessions),
                );
                if seal.is_some_and(|s| crate::audit::seal_verifies(&public_key, seq, &body, &s)) {
                    sealed += 1;
                    if sealed >= 16 {
                        break 'pages;
                    }
                }
            }
            if last_page {
                break;
            }
        }
        // One mark: the latest end either says.
        let ended: Vec<(String, i64)> = ended
            .iter()
            .map(|(_, g)| *g)
            .max()
            .map(|g| (sessions.clone(), g))
            .into_iter()
            .collect();
        let intact = super::seal::sealed_in(&self.hsm, session_mac_input(&rec), &rec.mac).await?;
        if !intact || account_of_arn(&rec.role_arn) != Some(rec.account_id.as_str()) {
            tracing::error!(
                access_key_id,
                "session row failed its integrity check; refusing it"
            );
            return Err(CredentialError::Unrecognized);
        }
        if let Some((_, issued, ended)) =
            super::seal::first_behind(&[(sessions, rec.mac.as_slice())], &ended)
        {
            tracing::error!(
                access_key_id,
                issued,
                ended,
                "a session's row put back after the role's sessions ended (its trust policy replaced, or the role deleted); refusing it"
            );
            return Err(CredentialError::Unrecognized);
        }
        let key = self
            .derive(rec.secret_blob.clone(), rec.root_version, scope)
            .await?;
        Ok(Arc::new(SigningKey {
            key,
            access_key_id: rec.access_key_id.clone(),
            principal_arn: format!(
                "arn:aws:sts::{}:assumed-role/{}/{}",
                rec.account_id,
                role_name(&rec.role_arn),
                rec.session_name
            ),
            account_id: rec.account_id.clone(),
            role_arn: Some(rec.role_arn.clone()),
            session: Some(SessionCheck {
                token_sha256: rec.token_sha256.clone(),
                expires_at: rec.expires_at,
            }),
        }))
    }

    /// Issue temporary credentials for a role (the caller was authorized by its trust policy).
    pub async fn create_session(
        &self,
        role: &AssumableRole,
        role_arn: &str,
        session_name: &str,
        duration: chrono::Duration,
    ) -> Result<IssuedSession> {
        let rnd = self.hsm.random(16 + 30 + 48 + 8).await?;
        const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let id: String = "ASIA"
            .chars()
            .chain(rnd[..16].iter().map(|b| B32[(*b & 31) as usize] as char))
            .collect();
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD;
        let secret = SecretString::from(b64.encode(&rnd[16..46]));
        let token = SecretString::from(format!("KMSST1{}", b64.encode(&rnd[46..94])));
        let role_id: String = "AROA"
            .chars()
            .chain(
                rnd[94..102]
                    .iter()
                    .chain(rnd[..8].iter())
                    .map(|b| B32[(*b & 31) as usize] as char),
            )
            .collect();
        let material = signing_secret(&secret);
        let (blob, root_version) = self.hsm.wrap_hmac_secret(material).await?;
        let expires_at = chrono::Utc::now() + duration;
        // Whole seconds: the MAC covers the expiry as epoch seconds.
        let expires_at =
            chrono::DateTime::from_timestamp(expires_at.timestamp(), 0).unwrap_or(expires_at);
        let mut rec = crate::store::SessionRecord {
            access_key_id: id.clone(),
            role_arn: role_arn.to_string(),
            account_id: role.account_id.clone(),
            session_name: session_name.to_string(),
            secret_blob: blob,
            root_version: root_version as i32,
            token_sha256: aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                token.expose_secret().as_bytes(),
            )
            .as_ref()
            .to_vec(),
            expires_at,
            mac: vec![],
        };
        // Sealed at the generation of the role as it was authorized: once the role's sessions
        // end, the trail holds a later one, and this row put back is refused.
        rec.mac = super::seal::seal_in(&self.hsm, session_mac_input(&rec), role.generation).await?;
        self.ids.insert_session(&rec).await?;
        Ok(IssuedSession {
            access_key_id: id,
            secret,
            token,
            expires_at,
            assumed_role_arn: format!(
                "arn:aws:sts::{}:assumed-role/{}/{session_name}",
                role.account_id,
                role_name(role_arn)
            ),
            assumed_role_id: format!("{role_id}:{session_name}"),
        })
    }

    /// Store an access key for a principal: the secret goes into the token, is wrapped there,
    /// and only the wrapped blob and a row MAC reach the database.
    pub async fn import(
        &self,
        principal_arn: &str,
        access_key_id: &str,
        secret: &SecretString,
    ) -> Result<()> {
        if !valid_access_key_id(access_key_id) {
            return Err(KmsError::Validation(
                "access key ids are 16 to 128 letters and digits".into(),
            ));
        }
        if !valid_secret(secret.expose_secret()) {
            return Err(KmsError::Validation(
                "secret access keys are 28 to 128 printable characters".into(),
            ));
        }
        let material = signing_secret(secret);
        let (blob, root_version) = self.hsm.wrap_hmac_secret(material).await?;
        let mut rec = AccessKeyRecord {
            access_key_id: access_key_id.to_string(),
            principal_arn: principal_arn.to_string(),
            account_id: String::new(),
            status: "Active".into(),
            secret_blob: blob,
            root_version: root_version as i32,
            mac: vec![],
        };
        rec.mac = self.hsm.row_mac(access_key_mac_input(&rec)).await?;
        self.ids.put_access_key(&rec).await.map_err(|e| match e {
            crate::store::StoreError::Conflict { .. } => {
                KmsError::Validation(format!("access key {access_key_id} already exists"))
            }
            other => other.into(),
        })
    }

    /// Activate or deactivate an access key (the row's MAC covers its status). The row is
    /// verified first: a row edited in the database (another principal, another secret) is
    /// refused, never sealed as it reads; and the new status is written only over the row
    /// verified.
    pub async fn set_status(&self, access_key_id: &str, active: bool) -> Result<()> {
        let mut rec = self.ids.access_key(access_key_id).await?.ok_or_else(|| {
            KmsError::NotFound(format!("access key {access_key_id} does not exist"))
        })?;
        if !self
            .hsm
            .row_mac_matches(access_key_mac_input(&rec), &rec.mac)
            .await?
        {
            tracing::error!(
                access_key_id,
                "access key row failed its integrity check; its status is not changed"
            );
            return Err(KmsError::Validation(format!(
                "access key {access_key_id} failed its integrity check (its row was changed outside the service); it is not sealed again. Delete it and create a new one."
            )));
        }
        let verified = std::mem::take(&mut rec.mac);
        rec.status = if active { "Active" } else { "Inactive" }.into();
        let mac = self.hsm.row_mac(access_key_mac_input(&rec)).await?;
        if !self
            .ids
            .set_access_key_status(access_key_id, &rec.status, &verified, &mac)
            .await?
        {
            return Err(KmsError::Conflict(format!(
                "access key {access_key_id} changed while its status was being set; try again"
            )));
        }
        self.invalidate_all();
        Ok(())
    }

    /// A new access key's random id and secret from the token's RNG (stored by
    /// [`Self::import`]). The secret is returned once and not kept.
    pub async fn new_access_key(&self) -> Result<(String, SecretString)> {
        let rnd = self.hsm.random(16 + 30).await?;
        const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        // 256 is a multiple of 32, so `b & 31` is uniform.
        let id: String = "AKIA"
            .chars()
            .chain(rnd[..16].iter().map(|b| B32[(*b & 31) as usize] as char))
            .collect();
        let secret = SecretString::from(
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(&rnd[16..46]),
        );
        Ok((id, secret))
    }
}

/// Whose ends [`Credentials::end_bound`] reads: an access key's (deactivated, deleted), or a
/// principal's (deleted).
#[derive(Clone, Copy)]
enum Ends<'a> {
    Key(&'a str),
    Principal(&'a str),
}

/// The time an event's body names (`eventTime`, to the second).
fn body_time(body: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let t = chrono::DateTime::parse_from_rfc3339(v["eventTime"].as_str()?).ok()?;
    Some(t.to_utc())
}

#[cfg(test)]
mod tests {
    #[test]
    fn account_of_arn() {
        assert_eq!(
            super::account_of_arn("arn:aws:iam::123456789012:user/admin"),
            Some("123456789012")
        );
        assert_eq!(super::account_of_arn("arn:aws:iam::12345:user/admin"), None);
        assert_eq!(
            super::account_of_arn("arn:aws:kms:us-east-1:123456789012:key/x"),
            None
        );
    }
}
