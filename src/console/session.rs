//! Console sessions: a sign-in checks an access key id and its secret as the API checks a
//! request (the secret signs one with `aws-sigv4`, the API's verifier checks it), and opens a
//! session named by a random cookie. The
//! session knows the principal, never the secret; it ends when it expires, when its user signs
//! out, and as soon as its access key no longer signs (deactivated, deleted).

use crate::api::ApiState;
use crate::domain::Caller;
use aws_lc_rs::{digest, rand::SecureRandom};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie that names a session, over plain HTTP (loopback only).
pub const COOKIE: &str = "kms_console";

/// The cookie that names a session over TLS. A browser takes a `__Host-` cookie only from
/// this host itself, over HTTPS, for every path: a sibling host (`evil.example.com` beside
/// `kms.example.com`) cannot plant its own session under this name for the victim to work
/// in.
pub const HOST_COOKIE: &str = "__Host-kms_console";

/// One signed-in principal.
#[derive(Clone)]
pub struct Session {
    pub access_key_id: String,
    pub principal_arn: String,
    pub account_id: String,
    pub region: String,
    /// The token every form of the session carries (CSRF).
    pub csrf: String,
    /// The SHA-256 (hex) of the client certificate the session was opened with, if it was:
    /// the session is then found only over a connection that presents it.
    pub certificate: Option<String>,
    expires: Instant,
}

impl Session {
    /// The session's principal as the domain authorizes it.
    pub fn caller(&self, source_ip: &str, secure: bool) -> Caller {
        Caller {
            account_id: self.account_id.clone(),
            principal_arn: self.principal_arn.clone(),
            region: self.region.clone(),
            source_ip: Some(source_ip.to_string()),
            grant_tokens: Vec::new(),
            role_arn: None,
            request_alias: None,
            access_key_id: self.access_key_id.clone(),
            secure_transport: secure,
            re_encrypt_on_same_key: None,
        }
    }
}

/// The sessions of this node, by the SHA-256 of their cookie (the cookie itself is kept
/// nowhere on the server).
pub struct Sessions {
    live: Mutex<Live>,
    lifetime: Duration,
}

/// The live sessions of one access key at most: signing in again ends the oldest.
pub const SESSIONS_PER_KEY: usize = 10;

/// The sessions by cookie digest, and each access key's cookie digests, oldest first.
#[derive(Default)]
struct Live {
    by_cookie: HashMap<Vec<u8>, Session>,
    by_key: HashMap<String, std::collections::VecDeque<Vec<u8>>>,
    swept: Option<Instant>,
}

impl Live {
    fn remove(&mut self, digest: &[u8]) {
        if let Some(s) = self.by_cookie.remove(digest) {
            if let Some(q) = self.by_key.get_mut(&s.access_key_id) {
                q.retain(|d| d != digest);
                if q.is_empty() {
                    self.by_key.remove(&s.access_key_id);
                }
            }
        }
    }

    /// Forget expired sessions, at most once a second (not on every sign-in).
    fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.swept = Some(now);
        let expired: Vec<Vec<u8>> = (self.by_cookie.iter())
            .filter(|(_, s)| s.expires <= now)
            .map(|(d, _)| d.clone())
            .collect();
        for d in expired {
            self.remove(&d);
        }
    }
}

/// Why a sign-in failed: the credentials (all the same to the user: one message, no oracle),
/// or the account's request rate (told only once the credentials are good).
#[derive(Debug)]
pub enum SignInRefused {
    Invalid,
    Throttled,
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source");
    hex::encode(b)
}

/// A sign-in counts against its account's share, as a page does: checked before the session
/// is opened (so a refused one ends no other session of its key).
fn admitted(api: &ApiState, account: &str, region: &str) -> Result<(), SignInRefused> {
    match api.quotas.allow(account, region, "ConsoleLogin") {
        true => Ok(()),
        false => Err(SignInRefused::Throttled),
    }
}

fn cookie_digest(cookie: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, cookie.as_bytes())
        .as_ref()
        .to_vec()
}

impl Sessions {
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            live: Mutex::new(Live::default()),
            lifetime,
        }
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Check `secret` for `access_key_id` as SigV4 checks a signature, and open a session for
    /// its principal: the cookie to set, and the session.
    pub async fn sign_in(
        &self,
        api: &ApiState,
        access_key_id: &str,
        secret: &str,
    ) -> Result<(String, Session), SignInRefused> {
        // The secret signs a request as any AWS client would (`aws-sigv4`), and the API's own
        // verifier checks it: the console takes exactly what the API takes.
        let region = api.regions.first().cloned().unwrap_or_default();
        let mut req = http::Request::builder()
            .method("POST")
            .uri("http://console/console/sign-in")
            .header("host", "console")
            .body(Vec::new())
            .map_err(|_| SignInRefused::Invalid)?;
        crate::api::sigv4::sign_request(&mut req, access_key_id, secret, &region, "kms")
            .map_err(|_| SignInRefused::Invalid)?;
        let verified = crate::api::sigv4::verify(
            &api.kms.credentials,
            "kms",
            std::slice::from_ref(&region),
            "POST",
            req.uri().path(),
            "",
            req.headers(),
            req.body(),
            chrono::Utc::now(),
        )
        .await
        .map_err(|_| SignInRefused::Invalid)?;
        // Temporary credentials fail there (their session token is not given): long-term keys.
        admitted(api, &verified.key.account_id, &region)?;
        Ok(self.open(&verified.key, region, None))
    }

    /// Open a session for the access key a client certificate names (`certificate`: its
    /// SHA-256, hex): an active long-term access key of this service, never temporary
    /// credentials. The TLS layer has checked the certificate against the client CAs.
    pub async fn sign_in_certificate(
        &self,
        api: &ApiState,
        access_key_id: &str,
        certificate: &str,
    ) -> Result<(String, Session), SignInRefused> {
        let region = api.regions.first().cloned().unwrap_or_default();
        let date = chrono::Utc::now().format("%Y%m%d").to_string();
        let key = api
            .kms
            .credentials
            .signing_key(access_key_id, &date, &region, "kms")
            .await
            .map_err(|_| SignInRefused::Invalid)?;
        if key.session.is_some() || key.role_arn.is_some() {
            return Err(SignInRefused::Invalid);
        }
        admitted(api, &key.account_id, &region)?;
        Ok(self.open(&key, region, Some(certificate.to_string())))
    }

    /// A new session of `key`'s principal: its cookie, and the session.
    fn open(
        &self,
        key: &crate::domain::credentials::SigningKey,
        region: String,
        certificate: Option<String>,
    ) -> (String, Session) {
        let session = Session {
            access_key_id: key.access_key_id.clone(),
            principal_arn: key.principal_arn.clone(),
            account_id: key.account_id.clone(),
            region,
            csrf: random_hex(32),
            certificate,
            expires: Instant::now() + self.lifetime,
        };
        let cookie = random_hex(32);
        let digest = cookie_digest(&cookie);
        let mut live = self.live.lock().unwrap();
        live.sweep(Instant::now());
        let queue = live.by_key.entry(key.access_key_id.clone()).or_default();
        queue.push_back(digest.clone());
        let oldest = (queue.len() > SESSIONS_PER_KEY).then(|| queue.pop_front());
        if let Some(Some(d)) = oldest {
            live.by_cookie.remove(&d);
        }
        live.by_cookie.insert(digest, session.clone());
        (cookie, session)
    }

    /// The live session `cookie` names, over a connection presenting client certificate
    /// `certificate` (SHA-256, hex): `None` if there is none, it expired, it was opened with
    /// another certificate than the connection's, or its access key no longer signs (then it
    /// is ended here).
    pub async fn find(
        &self,
        api: &ApiState,
        cookie: &str,
        certificate: Option<&str>,
    ) -> Option<Session> {
        let digest = cookie_digest(cookie);
        let session = {
            let mut live = self.live.lock().unwrap();
            match live.by_cookie.get(&digest) {
                Some(s) if s.certificate.is_some() && s.certificate.as_deref() != certificate => {
                    return None
                }
                Some(s) if s.expires > Instant::now() => s.clone(),
                Some(_) => {
                    live.remove(&digest);
                    return None;
                }
                None => return None,
            }
        };
        let date = chrono::Utc::now().format("%Y%m%d").to_string();
        let still = api
            .kms
            .credentials
            .signing_key(&session.access_key_id, &date, &session.region, "kms")
            .await
            .is_ok();
        if !still {
            self.end(cookie);
            return None;
        }
        Some(session)
    }

    /// End the session `cookie` names.
    pub fn end(&self, cookie: &str) {
        self.live.lock().unwrap().remove(&cookie_digest(cookie));
    }
}
