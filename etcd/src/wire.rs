//! etcd's JSON gateway encoding: keys and values in base64, 64-bit integers as strings, and
//! fields at their zero value left out.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Deserializer};

/// Encodes bytes as the gateway expects them.
pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// A 64-bit integer the gateway writes as a string (or leaves out when zero).
pub(crate) fn int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int {
        Text(String),
        Number(i64),
    }
    match Int::deserialize(deserializer)? {
        Int::Number(n) => Ok(n),
        Int::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

/// Bytes the gateway writes in base64.
pub(crate) fn bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    STANDARD.decode(text).map_err(serde::de::Error::custom)
}

/// The header every response carries.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct Header {
    #[serde(default, deserialize_with = "int")]
    pub(crate) revision: i64,
}

/// A key with its value and revisions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct KeyValue {
    /// The key.
    #[serde(default, deserialize_with = "bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(default, deserialize_with = "bytes")]
    pub value: Vec<u8>,
    /// The revision that created the key (0: the key does not exist).
    #[serde(default, deserialize_with = "int")]
    pub create_revision: i64,
    /// The revision of the last change.
    #[serde(default, deserialize_with = "int")]
    pub mod_revision: i64,
    /// Changes since creation.
    #[serde(default, deserialize_with = "int")]
    pub version: i64,
    /// The lease the key is attached to (0: none).
    #[serde(default, deserialize_with = "int")]
    pub lease: i64,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RangeResponse {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) kvs: Vec<KeyValue>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PutResponse {
    #[serde(default)]
    pub(crate) header: Header,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TxnResponse {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) succeeded: bool,
    #[serde(default)]
    pub(crate) responses: Vec<TxnOpResponse>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct TxnOpResponse {
    #[serde(default)]
    pub(crate) response_range: Option<RangeResponse>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LeaseGrantResponse {
    #[serde(default, rename = "ID", deserialize_with = "int")]
    pub(crate) id: i64,
    #[serde(default)]
    pub(crate) error: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LeaseKeepAliveResponse {
    #[serde(default, rename = "TTL", deserialize_with = "int")]
    pub(crate) ttl: i64,
}

/// One message of a streaming call: `{"result": …}` or `{"error": …}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Streamed<T> {
    pub(crate) result: Option<T>,
    pub(crate) error: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct AuthenticateResponse {
    #[serde(default)]
    pub(crate) token: String,
}

/// The body of a refused call.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub(crate) error: String,
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) code: i32,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WatchResult {
    #[serde(default)]
    pub(crate) header: Header,
    #[serde(default)]
    pub(crate) created: bool,
    #[serde(default)]
    pub(crate) canceled: bool,
    #[serde(default, deserialize_with = "int")]
    pub(crate) compact_revision: i64,
    #[serde(default)]
    pub(crate) cancel_reason: String,
    #[serde(default)]
    pub(crate) events: Vec<WireEvent>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct WireEvent {
    #[serde(default, rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) kv: KeyValue,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_etcd_3_4_writes() {
        let text = r#"{"header":{"cluster_id":"1","member_id":"2","revision":"7","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"7","version":"3","value":"YmFy"}],"count":"1"}"#;
        let range: RangeResponse = serde_json::from_str(text).expect("valid");
        assert_eq!(range.header.revision, 7);
        assert_eq!(range.kvs[0].key, b"foo");
        assert_eq!(range.kvs[0].value, b"bar");
        assert_eq!(range.kvs[0].mod_revision, 7);
        assert_eq!(range.kvs[0].lease, 0, "left out = zero");
        let watch: Streamed<WatchResult> = serde_json::from_str(
            r#"{"result":{"header":{"raft_term":"2"},"canceled":true,"compact_revision":"3"}}"#,
        )
        .expect("valid");
        let result = watch.result.expect("result");
        assert!(result.canceled);
        assert_eq!(result.compact_revision, 3);
        assert_eq!(result.header.revision, 0);
    }
}
