//! Standard base64 (with padding), the one encoding of binary members on the wire, in the
//! trail's bodies and in exports. A leaf: every layer may read it.

use base64::Engine;
use serde_json::Value;

/// `bytes` in standard base64.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The bytes of a JSON string in standard base64; `None` for anything else.
pub fn unb64(v: &Value) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()
}
