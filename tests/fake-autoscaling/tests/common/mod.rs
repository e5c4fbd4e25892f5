//! What the integration tests share: a started fake with one tagged group, one termination hook
//! and an access key, the product's client pointed at it, and helpers to read its errors.

#![allow(dead_code)]

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::config::http::HttpResponse;
use aws_sdk_autoscaling::config::{BehaviorVersion, Builder, Credentials, Region};
use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};
use fake_autoscaling::{FakeAutoScaling, Hook};
use std::net::SocketAddr;

pub const REGION: &str = "us-east-1";
/// The access key ID of AWS's SigV4 examples.
pub const KEY: &str = "AKIDEXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
pub const GROUP: &str = "spot-nodes";
pub const HOOK: &str = "drain";
pub const INSTANCE: &str = "i-0123456789abcdef0";
/// The tag the project's IAM policy conditions the actions on.
pub const TAG: (&str, &str) = ("eviction-router/managed", "true");

pub struct Harness {
    pub asg: FakeAutoScaling,
    pub addr: SocketAddr,
}

/// A started fake with `GROUP` (tagged `TAG`) holding `hook`, an untagged group "other-nodes"
/// holding a hook of the same name, and the access key `KEY`.
pub async fn harness(hook: Hook) -> Harness {
    let asg = FakeAutoScaling::new(REGION);
    asg.add_access_key(KEY);
    asg.add_group(GROUP, &[TAG]);
    asg.add_hook(GROUP, hook.clone());
    asg.add_group("other-nodes", &[("team", "batch")]);
    asg.add_hook("other-nodes", hook);
    let addr = asg.start().await.expect("the fake binds 127.0.0.1");
    Harness { asg, addr }
}

/// The SDK's configuration for the fake, as the product builds it (static credentials, a
/// region, an endpoint URL), with the SDK's own hyper client without TLS. Nothing else is set,
/// so retries and timeouts are the SDK's defaults for `BehaviorVersion::latest()`.
pub fn config(addr: SocketAddr, key: &str) -> Builder {
    aws_sdk_autoscaling::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new(key, SECRET, None, None, "tests"))
        .endpoint_url(format!("http://{addr}"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
}

impl Harness {
    /// The client with the SDK's defaults.
    pub fn client(&self) -> Client {
        Client::from_conf(config(self.addr, KEY).build())
    }

    /// The client with changed settings.
    pub fn client_with(&self, f: impl FnOnce(Builder) -> Builder) -> Client {
        Client::from_conf(f(config(self.addr, KEY)).build())
    }

    /// `http://{addr}/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// The HTTP status, `code()` and `message()` of an SDK error.
pub fn parts<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> (u16, String, String) {
    let status = err.raw_response().map_or(0, |r| r.status().as_u16());
    (
        status,
        err.code().unwrap_or("<no code>").to_string(),
        err.message().unwrap_or("<no message>").to_string(),
    )
}
