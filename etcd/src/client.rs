//! The client: key-value reads, writes and transactions, leases, and watches, each sent to
//! the first member that answers (starting with the one that answered last).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::transport::{self, Tls};
use crate::wire::{self, encode, KeyValue};
use crate::Error;

/// gRPC's `UNAUTHENTICATED`, as the gateway reports an expired or missing token.
const UNAUTHENTICATED: i32 = 16;
/// The longest watch message accepted (a weights document is a few KiB).
const MAX_MESSAGE: usize = 4 << 20;

/// How to reach the cluster.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Members as `host:port`, tried in order.
    pub endpoints: Vec<String>,
    /// TLS towards every member (`None`: plain HTTP).
    pub tls: Option<Tls>,
    /// etcd user and password (`None`: the cluster has no authentication).
    pub credentials: Option<Credentials>,
    /// Bound on one call: connect, handshakes, answer.
    pub timeout: Duration,
}

/// An etcd user.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password (never logged).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// An etcd v3 client. Clones share the member in use and the auth token.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    /// The member that answered last: tried first.
    current: AtomicUsize,
    /// The auth token, once authenticated.
    token: Mutex<Option<String>>,
}

/// One key as read, with the store's revision at the time of the read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The key, if it exists.
    pub kv: Option<KeyValue>,
    /// The store's revision when it was read: watch from `revision + 1` to miss nothing.
    pub revision: i64,
}

/// A condition of a transaction.
#[derive(Clone, Debug)]
pub struct Compare(Value);

impl Compare {
    /// `key` was created at `revision` (0: `key` does not exist).
    pub fn create_revision(key: &str, revision: i64) -> Self {
        Self(json!({
            "key": encode(key.as_bytes()), "target": "CREATE", "result": "EQUAL",
            "create_revision": revision.to_string(),
        }))
    }

    /// `key` was last changed at `revision` (0: `key` does not exist).
    pub fn mod_revision(key: &str, revision: i64) -> Self {
        Self(json!({
            "key": encode(key.as_bytes()), "target": "MOD", "result": "EQUAL",
            "mod_revision": revision.to_string(),
        }))
    }
}

/// An operation of a transaction.
#[derive(Clone, Debug)]
pub struct Op(Value);

impl Op {
    /// Sets `key` to `value`, attached to `lease` (0: none).
    pub fn put(key: &str, value: &[u8], lease: i64) -> Self {
        Self(json!({"request_put": {
            "key": encode(key.as_bytes()), "value": encode(value), "lease": lease.to_string(),
        }}))
    }

    /// Reads `key` (its result is in [`TxnOutcome::reads`]).
    pub fn get(key: &str) -> Self {
        Self(json!({"request_range": {"key": encode(key.as_bytes())}}))
    }

    /// Deletes `key`.
    pub fn delete(key: &str) -> Self {
        Self(json!({"request_delete_range": {"key": encode(key.as_bytes())}}))
    }
}

/// What a transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every comparison held (and the success operations ran).
    pub succeeded: bool,
    /// The store's revision after the transaction.
    pub revision: i64,
    /// The keys read by the branch that ran, one list per [`Op::get`], in order.
    pub reads: Vec<Vec<KeyValue>>,
}

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The key was written.
    Put(KeyValue),
    /// The key was deleted (at `mod_revision`).
    Delete(KeyValue),
}

/// One message of a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// Changes, in revision order, with the store's revision after them.
    Events(Vec<Event>, i64),
    /// The revision asked for is compacted away: read the key again, then watch from there.
    Compacted(i64),
}

impl Client {
    /// A client for the members in `settings` (nothing is contacted yet).
    pub fn new(settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                current: AtomicUsize::new(0),
                token: Mutex::new(None),
            }),
        }
    }

    /// The members.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.settings.endpoints
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str) -> Result<Read, Error> {
        let body = json!({"key": encode(key.as_bytes())});
        let range: wire::RangeResponse = self.call("/v3/kv/range", &body, true).await?;
        Ok(Read {
            kv: range.kvs.into_iter().next(),
            revision: range.header.revision,
        })
    }

    /// Reads every key under `prefix`, with the store's revision.
    pub async fn get_prefix(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), Error> {
        let body = json!({
            "key": encode(prefix.as_bytes()),
            "range_end": encode(&prefix_end(prefix.as_bytes())),
        });
        let range: wire::RangeResponse = self.call("/v3/kv/range", &body, true).await?;
        Ok((range.kvs, range.header.revision))
    }

    /// Sets `key` to `value` unconditionally; returns the new revision.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<i64, Error> {
        let body = json!({"key": encode(key.as_bytes()), "value": encode(value)});
        let put: wire::PutResponse = self.call("/v3/kv/put", &body, false).await?;
        Ok(put.header.revision)
    }

    /// Runs `success` if every comparison holds, else `failure`, atomically.
    pub async fn txn(
        &self,
        compare: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<TxnOutcome, Error> {
        let unwrap = |ops: Vec<Op>| ops.into_iter().map(|o| o.0).collect::<Vec<_>>();
        let body = json!({
            "compare": compare.into_iter().map(|c| c.0).collect::<Vec<_>>(),
            "success": unwrap(success),
            "failure": unwrap(failure),
        });
        let txn: wire::TxnResponse = self.call("/v3/kv/txn", &body, false).await?;
        Ok(TxnOutcome {
            succeeded: txn.succeeded,
            revision: txn.header.revision,
            reads: txn
                .responses
                .into_iter()
                .filter_map(|r| r.response_range.map(|r| r.kvs))
                .collect(),
        })
    }

    /// Grants a lease of `ttl` seconds; returns its id.
    pub async fn grant(&self, ttl: i64) -> Result<i64, Error> {
        let grant: wire::LeaseGrantResponse = self
            .call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}), true)
            .await?;
        if !grant.error.is_empty() || grant.id == 0 {
            return Err(Error::Etcd(format!("lease not granted: {}", grant.error)));
        }
        Ok(grant.id)
    }

    /// Renews lease `id`; returns its remaining TTL in seconds, 0 when it has expired.
    pub async fn keep_alive(&self, id: i64) -> Result<i64, Error> {
        let answer: wire::Streamed<wire::LeaseKeepAliveResponse> = self
            .call("/v3/lease/keepalive", &json!({"ID": id.to_string()}), true)
            .await?;
        match (answer.result, answer.error) {
            (_, Some(error)) => Err(Error::Etcd(format!("lease keepalive: {error}"))),
            (Some(result), None) => Ok(result.ttl),
            (None, None) => Ok(0),
        }
    }

    /// Revokes lease `id` (its keys are deleted).
    pub async fn revoke(&self, id: i64) -> Result<(), Error> {
        let _: Value = self
            .call("/v3/lease/revoke", &json!({"ID": id.to_string()}), true)
            .await?;
        Ok(())
    }

    /// Watches `key` from `start_revision` (inclusive). The stream ends when the member
    /// goes away: watch again from the revision after the last one seen.
    pub async fn watch(&self, key: &str, start_revision: i64) -> Result<Watch, Error> {
        let body = json!({"create_request": {
            "key": encode(key.as_bytes()),
            "start_revision": start_revision.to_string(),
        }});
        let (response, _) = self.send("/v3/watch", &body, true).await?;
        let mut watch = Watch {
            body: response.into_body(),
            buffer: BytesMut::new(),
        };
        // The first message confirms the watch (or says why not).
        let timeout = self.inner.settings.timeout;
        let first = tokio::time::timeout(timeout, watch.message())
            .await
            .map_err(|_| Error::Connect(format!("watch not confirmed within {timeout:?}")))??;
        match first {
            Some(result) if result.created => Ok(watch),
            Some(result) if result.compact_revision > 0 => Ok(watch.with_pending(result)),
            Some(result) => Err(Error::Etcd(format!(
                "watch not created: {}",
                result.cancel_reason
            ))),
            None => Err(Error::Connect("watch ended before it was created".into())),
        }
    }

    /// Sends `body` to `path` and decodes the answer; re-authenticates once when the token
    /// has expired.
    async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        idempotent: bool,
    ) -> Result<T, Error> {
        let (response, _) = self.send(path, body, idempotent).await?;
        let (status, bytes) = transport::read_body(response, self.inner.settings.timeout).await?;
        if status != StatusCode::OK {
            return Err(refusal(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Etcd(format!("{path}: unexpected answer: {e}")))
    }

    /// Sends to the first member that takes the request; returns the response (status 200,
    /// body unread) and the member.
    async fn send(
        &self,
        path: &str,
        body: &Value,
        idempotent: bool,
    ) -> Result<(http::Response<Incoming>, usize), Error> {
        let settings = &self.inner.settings;
        let bytes = serde_json::to_vec(body).map_err(|e| Error::Etcd(e.to_string()))?;
        let mut last = Error::Connect("no etcd endpoints".into());
        let mut reauthenticated = false;
        let count = settings.endpoints.len();
        let first = self.inner.current.load(Ordering::Relaxed);
        let mut tried = 0;
        while tried < count {
            let index = (first + tried) % count;
            let endpoint = &settings.endpoints[index];
            let token = match self.token(index).await {
                Ok(token) => token,
                Err(e) => {
                    last = e;
                    tried += 1;
                    continue;
                }
            };
            let sent = transport::post(
                endpoint,
                settings.tls.as_ref(),
                path,
                token.as_deref(),
                bytes.clone(),
                settings.timeout,
            )
            .await;
            match sent {
                Ok(response) if response.status() == StatusCode::OK => {
                    self.inner.current.store(index, Ordering::Relaxed);
                    return Ok((response, index));
                }
                Ok(response) => {
                    let (status, body) = transport::read_body(response, settings.timeout).await?;
                    let error = refusal(status, &body);
                    if matches!(error, Error::Unauthenticated(_))
                        && settings.credentials.is_some()
                        && !reauthenticated
                    {
                        reauthenticated = true;
                        *self.lock_token() = None;
                        continue;
                    }
                    // A member without quorum says so; another one may have it.
                    if idempotent && matches!(error, Error::Unavailable(_)) {
                        last = error;
                        tried += 1;
                        continue;
                    }
                    return Err(error);
                }
                Err(e @ Error::Connect(_)) => {
                    last = e;
                    tried += 1;
                }
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// The auth token (authenticating against member `index` first when there is none).
    async fn token(&self, index: usize) -> Result<Option<String>, Error> {
        let settings = &self.inner.settings;
        let Some(credentials) = &settings.credentials else {
            return Ok(None);
        };
        if let Some(token) = self.lock_token().clone() {
            return Ok(Some(token));
        }
        let body = json!({"name": credentials.user, "password": credentials.password});
        let bytes = serde_json::to_vec(&body).map_err(|e| Error::Etcd(e.to_string()))?;
        let response = transport::post(
            &settings.endpoints[index],
            settings.tls.as_ref(),
            "/v3/auth/authenticate",
            None,
            bytes,
            settings.timeout,
        )
        .await?;
        let (status, body) = transport::read_body(response, settings.timeout).await?;
        if status != StatusCode::OK {
            return Err(match refusal(status, &body) {
                Error::Unavailable(m) => Error::Unavailable(m),
                other => Error::Auth(format!(
                    "etcd refused user \"{}\": {other} (check {} and {})",
                    credentials.user,
                    crate::USERNAME_ENV,
                    crate::PASSWORD_ENV
                )),
            });
        }
        let answer: wire::AuthenticateResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::Etcd(format!("authenticate: unexpected answer: {e}")))?;
        *self.lock_token() = Some(answer.token.clone());
        Ok(Some(answer.token))
    }

    fn lock_token(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.inner
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The error a non-200 answer stands for.
fn refusal(status: StatusCode, body: &[u8]) -> Error {
    let parsed: wire::ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = if parsed.message.is_empty() {
        if parsed.error.is_empty() {
            String::from_utf8_lossy(body).into_owned()
        } else {
            parsed.error
        }
    } else {
        parsed.message
    };
    let message = format!("{status}: {message}");
    if message.contains("CommonName of client") {
        // etcd's gateway refuses client certificates with a CN when authentication is on.
        return Error::Auth(format!(
            "{message} (with user authentication on, etcd's JSON gateway needs a client certificate without a Common Name: issue store.etcd.tls.cert without CN)"
        ));
    }
    match parsed.code {
        UNAUTHENTICATED => Error::Unauthenticated(message),
        _ if status == StatusCode::UNAUTHORIZED => Error::Unauthenticated(message),
        _ if status == StatusCode::FORBIDDEN => Error::Auth(message),
        _ if status == StatusCode::SERVICE_UNAVAILABLE => Error::Unavailable(message),
        _ => Error::Etcd(message),
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// An established watch.
#[derive(Debug)]
pub struct Watch {
    body: Incoming,
    buffer: BytesMut,
}

impl Watch {
    fn with_pending(mut self, result: wire::WatchResult) -> Self {
        // Put the compaction notice back in front: `next` reports it first.
        let line = format!(
            "{{\"result\":{{\"canceled\":true,\"compact_revision\":\"{}\"}}}}\n",
            result.compact_revision
        );
        let mut buffer = BytesMut::from(line.as_bytes());
        buffer.extend_from_slice(&self.buffer);
        self.buffer = buffer;
        self
    }

    /// The next changes, or `None` when the stream ended (the member went away).
    pub async fn next(&mut self) -> Result<Option<WatchMessage>, Error> {
        loop {
            let Some(result) = self.message().await? else {
                return Ok(None);
            };
            if result.compact_revision > 0 {
                return Ok(Some(WatchMessage::Compacted(result.compact_revision)));
            }
            if result.canceled {
                return Err(Error::Etcd(format!(
                    "watch canceled: {}",
                    result.cancel_reason
                )));
            }
            if result.events.is_empty() {
                continue;
            }
            let events = result
                .events
                .into_iter()
                .map(|e| match e.kind.as_str() {
                    "DELETE" => Event::Delete(e.kv),
                    _ => Event::Put(e.kv),
                })
                .collect();
            return Ok(Some(WatchMessage::Events(events, result.header.revision)));
        }
    }

    /// The next whole message of the stream.
    async fn message(&mut self) -> Result<Option<wire::WatchResult>, Error> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line = self.buffer.split_to(end + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let message: wire::Streamed<wire::WatchResult> = serde_json::from_slice(line)
                    .map_err(|e| Error::Etcd(format!("watch: unexpected message: {e}")))?;
                if let Some(error) = message.error {
                    return Err(Error::Etcd(format!("watch: {error}")));
                }
                return Ok(message.result);
            }
            if self.buffer.len() > MAX_MESSAGE {
                return Err(Error::Etcd(format!(
                    "watch: a message over {MAX_MESSAGE} bytes"
                )));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(Error::Connect(format!("watch: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn refusals_are_classified() {
        let body = br#"{"error":"etcdserver: invalid auth token","code":16,"message":"etcdserver: invalid auth token"}"#;
        assert!(matches!(
            refusal(StatusCode::UNAUTHORIZED, body),
            Error::Unauthenticated(_)
        ));
        let body =
            br#"{"error":"etcdserver: no leader","code":14,"message":"etcdserver: no leader"}"#;
        let error = refusal(StatusCode::SERVICE_UNAVAILABLE, body);
        assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
        assert!(error.to_string().contains("no leader"), "{error}");
    }
}
