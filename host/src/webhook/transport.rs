//! The HTTP connection to the webhook: hyper's pooled client over plain TCP or TLS, and the parts
//! of every request that are known once, when the config is loaded (the URI, the credentials of
//! the URL, the fixed headers), so that a call only adds its body and its delivery headers.
//!
//! hyper-util's client directly, not reqwest over the same hyper: reqwest's layers (redirects,
//! proxies, cookies, decompression, all off here) cost 15–17 % of stanzahook's CPU per stanza at
//! 2,000 stanzas/s (BENCHMARKS.md, "Capacity"), most of it per request work for features the
//! webhook call does not use.

use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

const AGENT: &str = concat!("stanzahook/", env!("CARGO_PKG_VERSION"));

/// An idle connection is closed after this long (the webhook's own keep-alive is often shorter:
/// hyper notices a connection the webhook closed and opens a new one).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Opening the TCP connection never waits longer than this, even with a longer `webhook.timeout`
/// (which bounds the whole call, TLS handshake included): a webhook that does not accept
/// connections is down, not slow.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One webhook URL's client. Clone is cheap: the connection pool is shared.
#[derive(Clone, Debug)]
pub(super) struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The URL without its credentials (they go in `authorization`) or fragment.
    uri: http::Uri,
    /// `Authorization: Basic …` when the URL has a user name or password, as curl and browsers do.
    authorization: Option<HeaderValue>,
}

/// The URL cannot be called, or the TLS setup failed: said when the config is loaded.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{0} cannot be used as an HTTP request target: {1}")]
    Uri(String, http::uri::InvalidUri),
    #[error("the URL's user name and password do not make a valid header: {0}")]
    Credentials(http::header::InvalidHeaderValue),
    #[error("setting up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

impl Transport {
    pub(super) fn new(url: &url::Url, timeout: Duration, max_connections: usize) -> Result<Transport, TransportError> {
        let authorization = basic_authorization(url).transpose().map_err(TransportError::Credentials)?;
        let mut target = url.clone();
        // Both only fail for URLs that cannot have credentials, which then have none to remove.
        let _ = target.set_username("");
        let _ = target.set_password(None);
        target.set_fragment(None);
        let uri = target.as_str().parse::<http::Uri>().map_err(|e| TransportError::Uri(target.to_string(), e))?;

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false); // https:// is the TLS layer's, above this one
        tcp.set_nodelay(true); // a request is written at once; Nagle would hold its last segment
        tcp.set_connect_timeout(Some(timeout.min(MAX_CONNECT_TIMEOUT)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(max_connections)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Transport { client, uri, authorization })
    }

    /// A POST of `body` with the headers every call has; `headers` adds the delivery's own.
    pub(super) fn request(
        &self,
        body: Bytes,
        headers: impl FnOnce(&mut http::HeaderMap),
    ) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri.clone();
        let map = request.headers_mut();
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        map.insert(ACCEPT, HeaderValue::from_static("*/*"));
        map.insert(USER_AGENT, HeaderValue::from_static(AGENT));
        if let Some(authorization) = &self.authorization {
            map.insert(AUTHORIZATION, authorization.clone());
        }
        headers(map);
        request
    }

    pub(super) fn send(&self, request: http::Request<Full<Bytes>>) -> hyper_util::client::legacy::ResponseFuture {
        self.client.request(request)
    }

    /// `host:port` of the webhook, for errors about connecting to it.
    pub(super) fn authority(&self) -> String {
        let host = self.uri.host().unwrap_or_default();
        let port = self.uri.port_u16().unwrap_or(if self.uri.scheme_str() == Some("https") { 443 } else { 80 });
        format!("{host}:{port}")
    }
}

/// TLS 1.2 and 1.3 with the system's trust store (on Linux the CA bundle, or `SSL_CERT_FILE` /
/// `SSL_CERT_DIR` when set) and only HTTP/1.1 offered: each call in flight has a connection of
/// its own, which is what `webhook.max_connections` counts.
fn tls_config() -> Result<rustls::ClientConfig, rustls::Error> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_platform_verifier()?
        .with_no_client_auth())
}

/// The `Authorization` header for a URL's `user:password@`, percent-decoded as the URL encodes
/// them; `None` without credentials.
fn basic_authorization(url: &url::Url) -> Option<Result<HeaderValue, http::header::InvalidHeaderValue>> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut credentials = decode(url.username());
    credentials.push(b':');
    credentials.extend(decode(url.password().unwrap_or_default()));
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    Some(HeaderValue::from_str(&format!("Basic {encoded}")).map(|mut value| {
        value.set_sensitive(true);
        value
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).expect("a URL")
    }

    #[test]
    fn credentials_become_basic_authorization_and_leave_the_uri() {
        let t = Transport::new(&url("https://bot:p%40ss@hooks.example.org/x?y=1#frag"), Duration::from_secs(1), 4)
            .expect("transport");
        assert_eq!(t.uri, "https://hooks.example.org/x?y=1");
        // base64("bot:p@ss")
        assert_eq!(t.authorization.as_ref().expect("header"), "Basic Ym90OnBAc3M=");
        assert_eq!(t.authority(), "hooks.example.org:443");
        let plain = Transport::new(&url("http://127.0.0.1:8080/hook"), Duration::from_secs(1), 4).expect("transport");
        assert!(plain.authorization.is_none());
        assert_eq!(plain.authority(), "127.0.0.1:8080");
    }

    #[test]
    fn a_request_has_the_fixed_headers_and_the_calls_own() {
        let t = Transport::new(&url("http://u:@h/"), Duration::from_secs(1), 4).expect("transport");
        let r = t.request(Bytes::from_static(b"{}"), |h| {
            h.insert("webhook-id", HeaderValue::from_static("msg_1"));
        });
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[AUTHORIZATION], "Basic dTo=");
        assert_eq!(r.headers()["webhook-id"], "msg_1");
        assert!(r.headers()[USER_AGENT].to_str().is_ok_and(|v| v.starts_with("stanzahook/")));
    }
}
