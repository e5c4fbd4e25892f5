//! What the integration tests share: a started fake with one queue and a SAS key, and a plain
//! HTTP client for it.

#![allow(dead_code)]

use fake_servicebus::{FakeServiceBus, QueueSettings, sas_token};
use std::net::SocketAddr;
use std::time::Duration;

pub const NAMESPACE: &str = "contoso";
pub const QUEUE: &str = "jobs";
pub const KEY_NAME: &str = "RootManageSharedAccessKey";
/// A key as the portal shows one: base64 text, used by clients as the string's bytes.
pub const KEY: &str = "q1aVJvG3PGWeBGa9iAmOSlbKzqVwNzIb0yc3Q0lDxrg=";

pub struct Harness {
    pub bus: FakeServiceBus,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
}

pub async fn harness(settings: QueueSettings) -> Harness {
    let bus = FakeServiceBus::new(NAMESPACE);
    bus.create_queue(QUEUE, settings);
    bus.add_sas_key(KEY_NAME, KEY);
    let addr = bus.start().await.expect("the fake binds 127.0.0.1");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a plain HTTP client");
    Harness { bus, addr, http }
}

/// A valid `Authorization` header for `queue`.
pub fn token(queue: &str) -> String {
    sas_token(NAMESPACE, queue, KEY_NAME, KEY, Duration::from_secs(3600))
}

impl Harness {
    /// `path_and_query` on the fake.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// The fake's address for an absolute service URL (a `Location`), keeping path and query,
    /// as the product does.
    pub fn rewrite(&self, service_url: &str) -> String {
        let rest = service_url
            .strip_prefix("https://")
            .and_then(|s| s.split_once('/'))
            .map(|(_, path)| path)
            .expect("an absolute https URL");
        self.url(&format!("/{rest}"))
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        url: &str,
        authorization: Option<&str>,
        body: &str,
    ) -> reqwest::Response {
        let mut request = self.http.request(method, url).body(body.to_string());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.send().await.expect("the fake answers")
    }

    /// Peek-lock on `queue_path` (e.g. `jobs` or `jobs/$DeadLetterQueue`) with a valid token.
    pub async fn peek_lock(&self, queue_path: &str, timeout_secs: u64) -> reqwest::Response {
        let url = self.url(&format!(
            "/{queue_path}/messages/head?timeout={timeout_secs}"
        ));
        self.request(reqwest::Method::POST, &url, Some(&token(QUEUE)), "")
            .await
    }

    /// Sends `body` to `queue` over HTTP with a valid token.
    pub async fn send(&self, queue: &str, body: &str) -> reqwest::Response {
        let url = self.url(&format!("/{queue}/messages"));
        self.request(reqwest::Method::POST, &url, Some(&token(queue)), body)
            .await
    }

    /// DELETE, PUT or POST on the `Location` a peek-lock answered.
    pub async fn settle(&self, method: reqwest::Method, location: &str) -> reqwest::Response {
        let url = self.rewrite(location);
        self.request(method, &url, Some(&token(QUEUE)), "").await
    }
}

pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("a {name} header"))
        .to_str()
        .expect("a text header")
        .to_string()
}
