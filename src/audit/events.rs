//! The events: CloudTrail-shaped bodies for API calls (only the request members AWS logs),
//! their intent and commit markers, the service's own actions, security and operator events,
//! the row generations an event names, and the change record (with its MAC) a call's write
//! carries. Separate from recording: building an event is pure (but for the change record's
//! MAC), and the verifier reads these shapes back.

use super::*;
use crate::store::NewAuditEvent;
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Who made a call, as CloudTrail's `userIdentity` shows it.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub principal_arn: String,
    pub account_id: String,
    pub access_key_id: String,
    pub role_arn: Option<String>,
}

impl Identity {
    pub fn of(
        principal_arn: &str,
        account_id: &str,
        access_key_id: &str,
        role: Option<&String>,
    ) -> Self {
        Identity {
            principal_arn: principal_arn.into(),
            account_id: account_id.into(),
            access_key_id: access_key_id.into(),
            role_arn: role.cloned(),
        }
    }
}

/// Everything one API call's event is made of.
pub struct ApiCall<'a> {
    pub operation: &'a str,
    pub sts: bool,
    pub region: &'a str,
    pub source_ip: &'a str,
    pub user_agent: &'a str,
    pub identity: Option<&'a Identity>,
    pub request: Option<&'a Value>,
    pub response: Option<&'a Value>,
    pub error: Option<(&'a str, &'a str)>,
    pub request_id: &'a str,
    /// TLS version, cipher suite and the client certificate's SHA-256, if any.
    pub tls: Option<(&'a str, &'a str, Option<&'a str>)>,
    pub time: DateTime<Utc>,
    /// The keys the call resolved (by id, alias or ARN), beyond those its request and
    /// response name by ARN.
    pub keys: &'a [String],
}

/// Request members that may appear in the trail: identifiers, contexts, algorithms, specs and
/// settings. Anything else (plaintexts, ciphertexts, messages, signatures, MACs, public keys,
/// grant tokens, secrets) is left out by construction.
const LOGGED_MEMBERS: &[&str] = &[
    "KeyId",
    "AliasName",
    "TargetKeyId",
    "EncryptionContext",
    "SourceEncryptionContext",
    "DestinationEncryptionContext",
    "EncryptionAlgorithm",
    "SourceEncryptionAlgorithm",
    "DestinationEncryptionAlgorithm",
    "SourceKeyId",
    "DestinationKeyId",
    "SigningAlgorithm",
    "MessageType",
    "MacAlgorithm",
    "KeyAgreementAlgorithm",
    "KeySpec",
    "CustomerMasterKeySpec",
    "KeyPairSpec",
    "KeyUsage",
    "Origin",
    "MultiRegion",
    "NumberOfBytes",
    "Description",
    "Policy",
    "PolicyName",
    "BypassPolicyLockoutSafetyCheck",
    "PendingWindowInDays",
    "RotationPeriodInDays",
    "ReplicaRegion",
    "PrimaryRegion",
    "GranteePrincipal",
    "RetiringPrincipal",
    "Operations",
    "Constraints",
    "Name",
    "GrantId",
    "Tags",
    "TagKeys",
    "Limit",
    "Marker",
    "DryRun",
    "RoleArn",
    "RoleSessionName",
    "DurationSeconds",
    // Custom key stores (never KeyStorePassword).
    "CustomKeyStoreId",
    "CustomKeyStoreName",
    "NewCustomKeyStoreName",
    "CustomKeyStoreType",
    "CloudHsmClusterId",
    "TrustAnchorCertificate",
    // The XKS proxy API's calls (their request metadata; never data).
    "XksProxyUriPath",
    "ExternalKeyId",
    "KmsRequestId",
    "KmsOperation",
    "AwsPrincipalArn",
    "KmsKeyArn",
    "KmsViaService",
    // The console's own events (a report, an export of the trail, a search of it, a policy
    // simulated): what the auditor asked for, so that the trail says what was looked at.
    "Report",
    "Format",
    "EventName",
    "From",
    "To",
    "Events",
    "Key",
    "Query",
    "Path",
    "Action",
    "Principal",
];

fn camel(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The logged part of a request, with CloudTrail's camelCase member names.
pub fn request_parameters(request: &Value) -> Value {
    let mut out = Map::new();
    if let Some(m) = request.as_object() {
        for (k, v) in m {
            if LOGGED_MEMBERS.contains(&k.as_str()) {
                out.insert(camel(k), v.clone());
            }
        }
    }
    if out.is_empty() {
        Value::Null
    } else {
        Value::Object(out)
    }
}

/// Whether a call may change something (CloudTrail's `readOnly` is false): such a call's
/// intent is recorded before it runs ([`intent_event`]).
pub fn changes_state(op: &str) -> bool {
    !read_only(op)
}

/// Operations whose event CloudTrail marks `readOnly` (an operation the table does not know
/// is taken to change something, so its intent would be recorded first).
fn read_only(op: &str) -> bool {
    crate::operations::find_any(op).is_some_and(|o| o.read_only)
}

/// The account of a key ARN (`arn:aws:kms:<region>:<account>:key/…`, its fifth field): whose
/// trail an event filed under the key belongs to.
pub(crate) fn key_owner(arn: &str) -> Option<&str> {
    arn.split(':').nth(4)
}

/// The key ARNs an event is filed under: those of the response and the keys the call resolved
/// (the service's own), and the request's `KeyId` when it is an ARN of the caller's account.
/// Another account's ARN as the caller typed it is never taken: the key owner's trail shows
/// the calls filed under its keys, so a caller could otherwise file any call (one refused, one
/// of an operation that takes no key) in any account's trail.
fn key_arns_of(
    request: Option<&Value>,
    response: Option<&Value>,
    keys: &[String],
    caller_account: Option<&str>,
) -> Vec<String> {
    let mut arns = Vec::new();
    let mut take = |v: Option<&Value>| {
        if let Some(s) = v.and_then(Value::as_str) {
            if s.starts_with("arn:") && s.contains(":key/") && !arns.iter().any(|a| a == s) {
                arns.push(s.to_string());
            }
        }
    };
    if let Some(r) = response {
        take(r.get("KeyId"));
        take(r.get("SourceKeyId"));
        take(r.pointer("/KeyMetadata/Arn"));
        take(r.pointer("/ReplicaKeyMetadata/Arn"));
    }
    if let Some(r) = request {
        let own = r.get("KeyId").filter(|v| {
            let account = v.as_str().and_then(key_owner);
            account.is_some() && account == caller_account
        });
        take(own);
    }
    for k in keys {
        take(Some(&Value::String(k.clone())));
    }
    arns
}

/// CloudTrail's `responseElements` for the operations AWS fills it for; null otherwise.
fn response_elements(op: &str, response: Option<&Value>) -> Value {
    let Some(r) = response else {
        return Value::Null;
    };
    let pick = |names: &[&str]| {
        let mut m = Map::new();
        for n in names {
            if let Some(v) = r.get(*n) {
                m.insert(camel(n), v.clone());
            }
        }
        Value::Object(m)
    };
    match crate::operations::find_any(op) {
        Some(o) if !o.response_elements.is_empty() => pick(o.response_elements),
        _ => Value::Null,
    }
}

fn user_identity(id: Option<&Identity>) -> Member<'_> {
    let Some(i) = id else {
        return Member::Object(Members(vec![("type", Member::Str("Unknown"))]));
    };
    let kind = if i.role_arn.is_some() {
        "AssumedRole"
    } else {
        "IAMUser"
    };
    let principal = i.principal_arn.rsplit('/').next().unwrap_or_default();
    Member::Object(Members(vec![
        ("type", Member::Str(kind)),
        ("principalId", Member::Str(principal)),
        ("arn", Member::Str(&i.principal_arn)),
        ("accountId", Member::Str(&i.account_id)),
        ("accessKeyId", Member::Str(&i.access_key_id)),
    ]))
}

/// An object of an event body, written as [`canonical`] writes a `Value` (members sorted by
/// name, serde_json's escaping) without building the `Value` first: an API call's event is
/// written for every audited call, and its maps were a tenth of the server's time.
struct Members<'a>(Vec<(&'static str, Member<'a>)>);

enum Member<'a> {
    Str(&'a str),
    String(String),
    Bool(bool),
    Null,
    Value(Value),
    Object(Members<'a>),
    Objects(Vec<Members<'a>>),
}

impl<'a> Member<'a> {
    fn opt(s: Option<&'a str>) -> Member<'a> {
        s.map_or(Member::Null, Member::Str)
    }
}

impl<'a> Members<'a> {
    /// Set member `name` (replacing it if present).
    fn set(&mut self, name: &'static str, m: Member<'a>) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(e) => e.1 = m,
            None => self.0.push((name, m)),
        }
    }

    fn write(mut self, out: &mut Vec<u8>) {
        let string = |s: &str, out: &mut Vec<u8>| {
            serde_json::to_writer(&mut *out, s).expect("a string serializes")
        };
        self.0.sort_unstable_by(|a, b| a.0.cmp(b.0));
        out.push(b'{');
        for (i, (name, m)) in self.0.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(name, out);
            out.push(b':');
            match m {
                Member::Str(s) => string(s, out),
                Member::String(s) => string(&s, out),
                Member::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
                Member::Null => out.extend_from_slice(b"null"),
                Member::Value(v) => super::canonical_into(&v, out),
                Member::Object(o) => o.write(out),
                Member::Objects(list) => {
                    out.push(b'[');
                    for (j, o) in list.into_iter().enumerate() {
                        if j > 0 {
                            out.push(b',');
                        }
                        o.write(out);
                    }
                    out.push(b']');
                }
            }
        }
        out.push(b'}');
    }

    /// The canonical JSON text of this object.
    fn text(self) -> String {
        let mut out = Vec::with_capacity(1024);
        self.write(&mut out);
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }
}

/// An event of canonical JSON `body`.
fn new_event(
    name: &str,
    account: Option<String>,
    arns: Vec<String>,
    body: String,
    time: DateTime<Utc>,
    event_id: Uuid,
) -> NewAuditEvent {
    NewAuditEvent {
        event_id,
        event_time: time,
        event_name: name.to_string(),
        account_id: account,
        key_arns: arns,
        body,
        generations: Vec::new(),
    }
}

/// `event` naming the row generations its change wrote (`written`, see `domain::seal`): in its
/// body (`additionalEventData.rowGenerations`, hashed with the rest) and for the
/// `audit_generations` index. An event whose change wrote nothing is returned as it is.
pub fn with_generations(
    mut event: NewAuditEvent,
    written: &crate::store::Written,
) -> NewAuditEvent {
    let list = written.list();
    if list.is_empty() {
        return event;
    }
    let Ok(mut body) = serde_json::from_str::<Value>(&event.body) else {
        return event;
    };
    let map: serde_json::Map<String, Value> =
        list.iter().map(|(r, g)| (r.clone(), json!(g))).collect();
    if !body["additionalEventData"].is_object() {
        body["additionalEventData"] = json!({});
    }
    body["additionalEventData"]["rowGenerations"] = Value::Object(map);
    event.body = canonical(&body);
    event.generations = list;
    event
}

/// `event` as the event that settles the change record whose event is `record`: under the
/// record's id and time, so that the record, put back in the database once it was settled, is
/// found in the trail (by its id and time) and refused, not chained again. The record's time is
/// the call's, taken as it began.
pub fn settling(mut event: NewAuditEvent, record: &NewAuditEvent) -> NewAuditEvent {
    let Ok(mut body) = serde_json::from_str::<Value>(&event.body) else {
        return event;
    };
    body["eventID"] = json!(record.event_id.to_string());
    body["eventTime"] = json!(record
        .event_time
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    event.body = canonical(&body);
    event.event_id = record.event_id;
    event.event_time = record.event_time;
    event
}

/// The row generations an event's body names (`additionalEventData.rowGenerations`).
pub fn generations_in(body: &Value) -> Vec<(String, i64)> {
    body.pointer("/additionalEventData/rowGenerations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(r, g)| Some((r.clone(), g.as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The keys a call's event is filed under ([`key_arns_of`]); an STS call names none, whatever
/// members its request carries.
fn filed_under(c: &ApiCall<'_>, response: Option<&Value>, keys: &[String]) -> Vec<String> {
    if c.sts {
        return Vec::new();
    }
    let account = c.identity.map(|i| i.account_id.as_str());
    key_arns_of(c.request, response, keys, account)
}

/// The event for one API call.
pub fn api_event(c: &ApiCall<'_>) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let arns = filed_under(c, c.response, c.keys);
    let mut e = api_body(c, &arns, event_id);
    e.set("eventName", Member::Str(c.operation));
    if c.error.is_none() {
        e.set(
            "responseElements",
            Member::Value(response_elements(c.operation, c.response)),
        );
    }
    e.set("readOnly", Member::Bool(read_only(c.operation)));
    e.set("eventType", Member::Str("AwsApiCall"));
    if let Some((code, message)) = c.error {
        e.set("errorCode", Member::Str(code));
        e.set("errorMessage", Member::Str(message));
    }
    if let Some((version, suite, client)) = c.tls {
        let mut tls = Members(vec![
            ("tlsVersion", Member::Str(version)),
            ("cipherSuite", Member::Str(suite)),
        ]);
        if let Some(fp) = client {
            tls.set("clientCertificateSha256", Member::Str(fp));
        }
        e.set("tlsDetails", Member::Object(tls));
    }
    let body = e.text();
    let account = c.identity.map(|i| i.account_id.clone());
    new_event(c.operation, account, arns, body, c.time, event_id)
}

/// What an API call's events (its intent and its outcome) have in common.
fn api_body<'a>(c: &'a ApiCall<'a>, arns: &'a [String], event_id: Uuid) -> Members<'a> {
    let resource = |a: &'a String| {
        Members(vec![
            ("accountId", Member::Str(key_owner(a).unwrap_or_default())),
            ("type", Member::Str("AWS::KMS::Key")),
            ("ARN", Member::Str(a)),
        ])
    };
    let time = c.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let source = if c.sts {
        "sts.amazonaws.com"
    } else {
        "kms.amazonaws.com"
    };
    let parameters = c.request.map(request_parameters).unwrap_or(Value::Null);
    Members(vec![
        ("eventVersion", Member::Str("1.11")),
        ("eventTime", Member::String(time)),
        ("eventSource", Member::Str(source)),
        ("awsRegion", Member::Str(c.region)),
        ("sourceIPAddress", Member::Str(c.source_ip)),
        ("userAgent", Member::Str(c.user_agent)),
        ("userIdentity", user_identity(c.identity)),
        ("requestParameters", Member::Value(parameters)),
        ("responseElements", Member::Null),
        ("requestID", Member::Str(c.request_id)),
        ("eventID", Member::String(event_id.to_string())),
        (
            "resources",
            Member::Objects(arns.iter().map(resource).collect()),
        ),
        ("managementEvent", Member::Bool(true)),
        (
            "recipientAccountId",
            Member::opt(c.identity.map(|i| i.account_id.as_str())),
        ),
        ("eventCategory", Member::Str("Management")),
    ])
}

/// The event recorded before a call that may change something runs (`ApiCallStarted`): who
/// asks for what. The call runs only once it is durable, so no change is ever made without a
/// trace in the trail, even if the call's own event (with its outcome) cannot be written
/// afterwards; both carry the request id.
pub fn intent_event(c: &ApiCall<'_>) -> NewAuditEvent {
    call_marker(c, INTENT_EVENT, "AwsApiCallIntent")
}

/// The name of the event recorded before a call that may change something runs.
pub const INTENT_EVENT: &str = "ApiCallStarted";

/// The record that a call's change committed ([`ChangeRecord`]), prepared before the call runs
/// and written in the change's own transaction. Chained only if the call's own event never is
/// (`ApiCallCommitted`, with the call's request id): a change in force always has a trace of
/// its outcome in the trail, not only of its intent.
pub fn committed_event(c: &ApiCall<'_>) -> NewAuditEvent {
    call_marker(c, COMMITTED_EVENT, "AwsApiCallCommitted")
}

/// An event that marks a call which may change something (its intent, or its committed
/// change): the call's request and caller, its operation, under `name` and `event_type`.
fn call_marker(c: &ApiCall<'_>, name: &str, event_type: &str) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let arns = filed_under(c, None, &[]);
    let mut e = api_body(c, &arns, event_id);
    e.set("eventName", Member::Str(name));
    let operation = Members(vec![("operation", Member::Str(c.operation))]);
    e.set("additionalEventData", Member::Object(operation));
    e.set("readOnly", Member::Bool(false));
    e.set("eventType", Member::Str(event_type));
    let body = e.text();
    let account = c.identity.map(|i| i.account_id.clone());
    new_event(name, account, arns, body, c.time, event_id)
}

/// The name of the event chained for a change whose call's own event was never chained.
pub const COMMITTED_EVENT: &str = "ApiCallCommitted";

/// The change record for `event`, its MAC computed in the token.
pub async fn change_record_of(hsm: &Hsm, event: NewAuditEvent) -> Result<ChangeRecord, AuditError> {
    let mac = hsm
        .row_mac(change_record_message(&event))
        .await
        .map_err(|e| AuditError(e.to_string()))?;
    Ok(ChangeRecord {
        event,
        mac,
        written: Default::default(),
    })
}

/// The bytes a change record's MAC covers: every column the record is chained with.
pub(super) fn change_record_message(e: &NewAuditEvent) -> Vec<u8> {
    let mut m = b"kms.audit.change-record.v1\0".to_vec();
    m.extend_from_slice(e.event_id.as_bytes());
    m.extend_from_slice(&e.event_time.timestamp_micros().to_be_bytes());
    for part in [
        e.event_name.as_str(),
        e.account_id.as_deref().unwrap_or(""),
        &e.key_arns.join("\n"),
        &e.body,
    ] {
        m.extend_from_slice(&(part.len() as u64).to_be_bytes());
        m.extend_from_slice(part.as_bytes());
    }
    m
}

/// The event for something the service did by itself (rotation, deletion).
pub fn service_event(name: &str, key_arn: &str, region: &str, details: Value) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let time = Utc::now();
    let account = key_owner(key_arn).map(str::to_string);
    let resources = json!([{ "accountId": account, "type": "AWS::KMS::Key", "ARN": key_arn }]);
    let mut e = service_body(
        name,
        time,
        event_id,
        json!(region),
        details,
        false,
        resources,
    );
    e["recipientAccountId"] = json!(account);
    new_event(
        name,
        account,
        vec![key_arn.to_string()],
        canonical(&e),
        time,
        event_id,
    )
}

/// The body of an event the service records by itself (`AwsServiceEvent`): `details` as its
/// `additionalEventData`.
fn service_body(
    name: &str,
    time: DateTime<Utc>,
    event_id: Uuid,
    region: Value,
    details: Value,
    read_only: bool,
    resources: Value,
) -> Value {
    json!({
        "eventVersion": "1.11",
        "eventTime": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": "kms.amazonaws.com",
        "userAgent": "kms.amazonaws.com",
        "userIdentity": { "type": "AWSService", "invokedBy": "kms.amazonaws.com" },
        "requestParameters": Value::Null,
        "responseElements": Value::Null,
        "additionalEventData": details,
        "eventID": event_id.to_string(),
        "readOnly": read_only,
        "resources": resources,
        "eventType": "AwsServiceEvent",
        "managementEvent": true,
        "eventCategory": "Management",
    })
}

/// The name of the event that records a grant's end (retired or revoked), chained before the
/// grant's row is deleted.
pub const GRANT_ENDED_EVENT: &str = "GrantEnded";

/// The grant a `GrantEnded` event's body names.
pub fn ended_grant_id(body: &str) -> Option<String> {
    serde_json::from_str::<Value>(body)
        .ok()?
        .pointer("/additionalEventData/grantId")?
        .as_str()
        .map(str::to_string)
}

/// The event recorded before the service changes something by itself
/// (`ServiceActionStarted`, naming the action and the key).
pub fn service_intent_event(action: &str, key_arn: &str, region: &str) -> NewAuditEvent {
    service_event(
        SERVICE_INTENT_EVENT,
        key_arn,
        region,
        json!({ "action": action }),
    )
}

/// The name of the event recorded before the service changes something by itself.
pub const SERVICE_INTENT_EVENT: &str = "ServiceActionStarted";

/// An event about the service's own protection (authentication failures summarised per
/// source address), not about any key.
pub fn security_event(name: &str, details: Value) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let time = Utc::now();
    let e = service_body(name, time, event_id, Value::Null, details, true, json!([]));
    new_event(name, None, vec![], canonical(&e), time, event_id)
}

/// The event for an operator's `kms admin` change.
pub fn admin_event(action: &str, target: &str, operator: &str, details: Value) -> NewAuditEvent {
    operator_event(action, target, operator, details, Value::Null)
}

/// An operator's event named `name`, with `additional` as its `additionalEventData` unless null.
fn operator_event(
    name: &str,
    target: &str,
    operator: &str,
    details: Value,
    additional: Value,
) -> NewAuditEvent {
    let event_id = Uuid::new_v4();
    let time = Utc::now();
    let mut e = json!({
        "eventVersion": "1.11",
        "eventTime": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "eventSource": "kms-admin",
        "eventName": name,
        "awsRegion": Value::Null,
        "sourceIPAddress": "localhost",
        "userAgent": "kms admin",
        "userIdentity": { "type": "Operator", "principalId": operator },
        "requestParameters": { "target": target, "details": details },
        "responseElements": Value::Null,
        "eventID": event_id.to_string(),
        "readOnly": false,
        "resources": [],
        "eventType": "AwsConsoleAction",
        "managementEvent": true,
        "eventCategory": "Management",
    });
    if !additional.is_null() {
        e["additionalEventData"] = additional;
    }
    new_event(name, None, vec![], canonical(&e), time, event_id)
}

/// The event recorded before a `kms admin` command changes anything (`AdminCommandStarted`):
/// a command whose intent cannot be recorded changes nothing.
pub fn admin_intent_event(
    action: &str,
    target: &str,
    operator: &str,
    details: Value,
) -> NewAuditEvent {
    operator_event(
        ADMIN_INTENT_EVENT,
        target,
        operator,
        details,
        json!({ "command": action }),
    )
}

/// The name of the event recorded before a `kms admin` command runs.
pub const ADMIN_INTENT_EVENT: &str = "AdminCommandStarted";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_request_members_are_logged() {
        let req = json!({
            "KeyId": "alias/x",
            "Plaintext": "c2VjcmV0",
            "EncryptionContext": {"a": "b"},
            "GrantTokens": ["t"],
            "Message": "bQ==",
            "CiphertextBlob": "AQ==",
        });
        let p = request_parameters(&req);
        assert_eq!(
            p,
            json!({"keyId": "alias/x", "encryptionContext": {"a": "b"}})
        );
    }

    /// The API call's event is written without a `Value`: it must be the very bytes
    /// `canonical` gives of the event (the chain hashes them, `kms audit verify` reads them).
    #[test]
    fn an_api_calls_event_is_canonical_json_with_every_member() {
        let time = DateTime::parse_from_rfc3339("2026-12-05T10:11:12.5Z")
            .unwrap()
            .with_timezone(&Utc);
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let role = "arn:aws:iam::111122223333:role/r".to_string();
        let who = Identity::of(
            "arn:aws:sts::111122223333:assumed-role/r/s\u{e9}ss\"ion",
            "111122223333",
            "ASIAEXAMPLE",
            Some(&role),
        );
        let request = json!({"KeyId": arn, "Plaintext": "c2VjcmV0", "EncryptionContext": {"b": "\n", "a": "1"}});
        let response = json!({"KeyId": arn, "CiphertextBlob": "AQ=="});
        let call = |error, tls, identity| ApiCall {
            operation: "Encrypt",
            sts: false,
            region: "eu-west-1",
            source_ip: "10.0.0.1",
            user_agent: "aws-cli/2 \u{1}",
            identity,
            request: Some(&request),
            response: Some(&response),
            error,
            request_id: "req-1",
            tls,
            time,
            keys: &[],
        };
        let cases = [
            (
                call(None, None, Some(&who)),
                json!({
                    "responseElements": null, "readOnly": true, "eventType": "AwsApiCall",
                    "recipientAccountId": "111122223333",
                    "userIdentity": {"type": "AssumedRole", "principalId": "s\u{e9}ss\"ion",
                        "arn": who.principal_arn, "accountId": "111122223333", "accessKeyId": "ASIAEXAMPLE"},
                }),
            ),
            (
                call(
                    Some(("AccessDeniedException", "No \"way\"")),
                    Some(("TLSv1.3", "TLS13_AES_128_GCM_SHA256", Some("ab01"))),
                    None,
                ),
                json!({
                    "responseElements": null, "readOnly": true, "eventType": "AwsApiCall",
                    "errorCode": "AccessDeniedException", "errorMessage": "No \"way\"",
                    "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS13_AES_128_GCM_SHA256", "clientCertificateSha256": "ab01"},
                    "recipientAccountId": null, "userIdentity": {"type": "Unknown"},
                }),
            ),
        ];
        for (c, special) in cases {
            let e = api_event(&c);
            let body: Value = serde_json::from_str(&e.body).unwrap();
            assert_eq!(canonical(&body), e.body, "the bytes are canonical");
            let mut expected = json!({
                "eventVersion": "1.11", "eventTime": "2026-12-05T10:11:12Z",
                "eventSource": "kms.amazonaws.com", "eventName": "Encrypt", "awsRegion": "eu-west-1",
                "sourceIPAddress": "10.0.0.1", "userAgent": "aws-cli/2 \u{1}",
                "requestParameters": {"keyId": arn, "encryptionContext": {"a": "1", "b": "\n"}},
                "requestID": "req-1", "eventID": e.event_id.to_string(),
                "resources": [{"accountId": "111122223333", "type": "AWS::KMS::Key", "ARN": arn}],
                "managementEvent": true, "eventCategory": "Management",
            });
            for (k, v) in special.as_object().unwrap() {
                expected[k] = v.clone();
            }
            assert_eq!(body, expected);
            assert_eq!(e.key_arns, vec![arn.to_string()]);
        }
        // The intent marker: the same members, its own name, type and operation.
        let m = intent_event(&call(None, None, Some(&who)));
        let marker: Value = serde_json::from_str(&m.body).unwrap();
        assert_eq!(canonical(&marker), m.body, "the bytes are canonical");
        assert_eq!(marker["eventName"], INTENT_EVENT);
        assert_eq!(marker["eventType"], "AwsApiCallIntent");
        assert_eq!(marker["readOnly"], false);
        assert_eq!(
            marker["additionalEventData"],
            json!({"operation": "Encrypt"})
        );
        assert_eq!(marker["userIdentity"]["type"], "AssumedRole");
    }
}
