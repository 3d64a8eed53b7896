//! One API call made on a principal's behalf by another front end of this service (the
//! console): the same operation handler, validation, authorization, throttling, intent and
//! event in the trail as a signed request gets — only the signature check is the front end's.

use super::error::ApiError;
use super::{audit, ApiState, CallInfo, Protocol, Reply, TlsDetails};
use crate::domain::Caller;
use serde_json::Value;

/// Who makes the call, and from where.
pub struct OnBehalf<'a> {
    pub caller: &'a Caller,
    pub peer: std::net::IpAddr,
    pub tls: Option<&'a TlsDetails>,
    /// The user agent the trail records (`kms-console (<browser>)`).
    pub user_agent: &'a str,
}

/// Call `operation` with `request` (its JSON members) as `who`: the response members, or the
/// error the API would answer. The call's event is in the trail before this returns; a call
/// that cannot be recorded fails (`DependencyTimeoutException`).
pub async fn call_as(
    state: &ApiState,
    who: &OnBehalf<'_>,
    operation: &str,
    request: Value,
) -> Result<Value, ApiError> {
    // Boxed: the future of every operation's handler is large, and a page that makes several
    // calls would otherwise hold one of them per call (a key's page overflowed a worker
    // thread's stack in a debug build).
    Box::pin(call(state, who, operation, request)).await
}

async fn call(
    state: &ApiState,
    who: &OnBehalf<'_>,
    operation: &str,
    request: Value,
) -> Result<Value, ApiError> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let caller = who.caller;
    let mut info = CallInfo {
        identity: Some(caller.identity()),
        region: caller.region.clone(),
        user_agent: who.user_agent.to_string(),
        request: Some(request.clone()),
        operation: operation.to_string(),
        ..CallInfo::default()
    };
    let body = serde_json::to_vec(&request).unwrap_or_default();
    let (result, _) = crate::deadline::within(
        std::time::Instant::now() + state.request_timeout,
        state.key_generation_timeout,
        async {
            if crate::operations::find(operation).is_none() {
                return Err(ApiError::UnknownOperation(operation.to_string()));
            }
            if !state
                .quotas
                .allow(&caller.account_id, &caller.region, operation)
            {
                return Err(ApiError::Kms(crate::domain::KmsError::Throttled));
            }
            super::run_operation(
                state,
                who.peer,
                &mut info,
                caller,
                operation,
                &body,
                &request_id,
            )
            .await
        },
    )
    .await;
    let result = result.unwrap_or(Err(ApiError::Kms(
        crate::domain::KmsError::DependencyTimeout,
    )));
    let recorded = audit(
        state,
        who.peer,
        who.tls,
        &request_id,
        &info,
        Protocol::Json,
        &result,
    )
    .await;
    if let Err(e) = recorded {
        tracing::error!(operation, error = %e, "the call's event could not be recorded; answered as failed");
        return Err(ApiError::Kms(crate::domain::KmsError::DependencyTimeout));
    }
    match result {
        Ok(Reply::Json(v)) => Ok(v),
        Ok(Reply::Xml(_)) => Err(ApiError::UnknownOperation(operation.to_string())),
        Err(e) => Err(e),
    }
}
