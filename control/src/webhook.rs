//! Calls to other systems around a rollout, of Flagger's kinds: the JSON event (with a human
//! `text` line that Slack-style incoming webhooks show as is), POSTed with retries and backoff
//! bounded by the hook's timeout. Header values come from the environment and are never
//! logged.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde::Serialize;
use sluice_config::{HookKind, Webhook, Weight};
use tokio::time::Instant;

use crate::admin_client::exchange;
use crate::analysis::{Check, GateResult};
use crate::rollout::{Action, Phase};

/// The first retry waits this long; each next one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The JSON body of every call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Payload {
    /// The rollout.
    pub rollout: String,
    /// The hook's type (`pre-rollout`, `event`, ...).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The rollout's phase.
    pub phase: Phase,
    /// The 1-based step (0 before the first).
    pub step: usize,
    /// The number of steps.
    pub steps: usize,
    /// The canary weight in force, percent.
    pub weight: Weight,
    /// The canary upstream's version.
    pub canary_version: Option<String>,
    /// The stable upstream's version.
    pub stable_version: Option<String>,
    /// The decision (events and post-rollout).
    pub action: Option<Action>,
    /// The decision's sentence, with its numbers.
    pub message: Option<String>,
    /// The last check with its numbers.
    pub check: Option<Check>,
    /// Who asked, for an operator's command.
    pub by: Option<String>,
    /// Unix seconds.
    pub at: u64,
    /// One human line, e.g. "sluice: myapp rolled back at canary 10%: check failed: ...".
    pub text: String,
}

impl Payload {
    /// `self` as sent to a hook of `kind`.
    pub fn for_kind(&self, kind: HookKind) -> Self {
        Self {
            kind: kind.as_str(),
            ..self.clone()
        }
    }
}

/// Delivers `payload` to `hook`: POST until a 2xx answer or the hook's timeout. The result
/// says how it ended (`HTTP 200 after 2 attempts`, `HTTP 503`, `no answer: ...`).
pub async fn deliver(hook: &Webhook, payload: &Payload) -> GateResult {
    let result = |passed: bool, detail: String| GateResult {
        name: hook.name.clone(),
        kind: hook.kind.as_str().to_string(),
        passed,
        detail,
    };
    let target = match Target::parse(&hook.url) {
        Ok(target) => target,
        Err(e) => return result(false, e),
    };
    let body = match serde_json::to_vec(&payload.for_kind(hook.kind)) {
        Ok(body) => Bytes::from(body),
        Err(e) => return result(false, format!("cannot encode the event: {e}")),
    };
    let mut headers = Vec::new();
    for (name, variable) in &hook.headers_env {
        let Ok(value) = std::env::var(variable) else {
            return result(
                false,
                format!("environment variable {variable} (for header {name}) is not set"),
            );
        };
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value),
        ) {
            (Ok(name), Ok(mut value)) => {
                value.set_sensitive(true);
                headers.push((name, value));
            }
            _ => {
                return result(
                    false,
                    format!("header {name} from {variable} is not a valid header"),
                )
            }
        }
    }
    let deadline = Instant::now() + hook.timeout;
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let outcome =
            match tokio::time::timeout(remaining, target.post(body.clone(), &headers)).await {
                Ok(Ok(status)) if status.is_success() => {
                    let tries = if attempts > 1 {
                        format!(" after {attempts} attempts")
                    } else {
                        String::new()
                    };
                    return result(true, format!("HTTP {}{tries}", status.as_u16()));
                }
                Ok(Ok(status)) => format!("HTTP {}", status.as_u16()),
                Ok(Err(e)) => format!("no answer: {e}"),
                Err(_) => format!("no answer within {:?}", hook.timeout),
            };
        let now = Instant::now();
        if now + backoff >= deadline {
            let tries = if attempts > 1 {
                format!(" ({attempts} attempts in {:?})", hook.timeout)
            } else {
                String::new()
            };
            return result(false, format!("{outcome}{tries}"));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Where a hook's URL points.
#[derive(Debug)]
struct Target {
    address: String,
    host: String,
    path: String,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

impl Target {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("invalid URL {url}: {e}"))?;
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| format!("invalid URL {url}: no host"))?
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = if https {
            let name = ServerName::try_from(bare.clone())
                .map_err(|_| format!("invalid host {host} for TLS"))?;
            Some((roots(), name))
        } else {
            None
        };
        Ok(Self {
            address: format!("{host}:{port}"),
            host: uri
                .authority()
                .map_or(host.clone(), |a| a.as_str().to_string()),
            path: uri
                .path_and_query()
                .map_or("/".into(), |p| p.as_str().to_string()),
            tls,
        })
    }

    async fn post(
        &self,
        body: Bytes,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<http::StatusCode, String> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&self.path)
            .header(header::HOST, &self.host)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, "sluice-control")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        for (name, value) in headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        exchange(&self.address, self.tls.as_ref(), request)
            .await
            .map(|(status, _)| status)
            .map_err(|e| e.to_string())
    }
}

/// The public web's roots (Mozilla's list, built in): hooks go to chat services and CI
/// systems with public certificates.
fn roots() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            // The ring provider supports the default versions; nothing here depends on input.
            Arc::new(config.expect("ring supports the default protocol versions"))
        })
        .clone()
}
