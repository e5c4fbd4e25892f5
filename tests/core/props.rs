//! Property tests: no input makes a normaliser panic, and whatever it accepts is a valid event.

use eviction_router::event::Provider;
use eviction_router::providers::{self, MAX_MESSAGE_BYTES};
use proptest::prelude::*;
use serde_json::Value;

fn providers_strategy() -> impl Strategy<Value = Provider> {
    prop_oneof![
        Just(Provider::Aws),
        Just(Provider::Azure),
        Just(Provider::Gcp)
    ]
}

/// Arbitrary JSON, biased towards the field names the normalisers look at, so that the typed
/// paths (not only the first type check) are exercised.
fn arb_json() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("id".to_owned()),
        Just("source".to_owned()),
        Just("detail-type".to_owned()),
        Just("detail".to_owned()),
        Just("time".to_owned()),
        Just("instance-id".to_owned()),
        Just("eventType".to_owned()),
        Just("type".to_owned()),
        Just("data".to_owned()),
        Just("resourceInfo".to_owned()),
        Just("properties".to_owned()),
        Just("Resources".to_owned()),
        Just("protoPayload".to_owned()),
        Just("methodName".to_owned()),
        Just("message".to_owned()),
        "[a-zA-Z-]{1,12}",
    ];
    let values = prop_oneof![
        Just("aws.ec2".to_owned()),
        Just("EC2 Spot Instance Interruption Warning".to_owned()),
        Just("AWS Health Event".to_owned()),
        Just(
            "Microsoft.ResourceNotifications.MaintenanceResources.ScheduledEventEmitted".to_owned()
        ),
        Just("compute.instances.preempted".to_owned()),
        Just("2026-11-23T10:00:00Z".to_owned()),
        Just("Mon, 23 Nov 2026 10:00:00 GMT".to_owned()),
        ".{0,20}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        values.prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn fixtures() -> Vec<(Provider, Vec<u8>)> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for provider in Provider::ALL {
        let mut files: Vec<_> = std::fs::read_dir(root.join(provider.as_str()))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for f in files {
            out.push((*provider, std::fs::read(f).unwrap()));
        }
    }
    out
}

/// Whatever a normaliser accepts must serialise, be a valid CloudEvent envelope and keep its
/// invariants.
fn check_accepted(provider: Provider, body: &[u8]) {
    if let Ok(parsed) = providers::normalize(provider, body) {
        for event in parsed.events {
            assert!(!event.id.is_empty());
            assert_eq!(event.data.provider, provider);
            assert_eq!(event.subject(), event.data.instance.id);
            let line = event.to_json_line();
            assert!(serde_json::from_str::<Value>(&line).is_ok());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(provider in providers_strategy(), body in prop::collection::vec(any::<u8>(), 0..2048)) {
        check_accepted(provider, &body);
    }

    #[test]
    fn arbitrary_json_never_panics(provider in providers_strategy(), value in arb_json()) {
        check_accepted(provider, value.to_string().as_bytes());
        // Also as a one-element array (Azure webhook bodies) and a push envelope (GCP).
        check_accepted(provider, Value::Array(vec![value.clone()]).to_string().as_bytes());
        use base64::Engine as _;
        let data = base64::engine::general_purpose::STANDARD.encode(value.to_string());
        let push = serde_json::json!({"message": {"data": data}, "subscription": "projects/p/subscriptions/s"});
        check_accepted(provider, push.to_string().as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic(index in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>(), flip in any::<u8>(), at in any::<prop::sample::Index>()) {
        let fixtures = fixtures();
        let (provider, body) = &fixtures[index.index(fixtures.len())];
        // Truncated anywhere.
        check_accepted(*provider, &body[..cut.index(body.len() + 1)]);
        // One byte changed anywhere.
        let mut changed = body.clone();
        let i = at.index(changed.len());
        changed[i] ^= flip;
        check_accepted(*provider, &changed);
    }
}

#[test]
fn deeply_nested_input_is_an_error_not_a_crash() {
    let depth = 100_000;
    let mut deep = "[".repeat(depth);
    deep.push_str(&"]".repeat(depth));
    let in_detail = format!(
        r#"{{"id":"x","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","time":"2026-01-01T00:00:00Z","detail":{deep}}}"#
    );
    let in_data = format!(r#"{{"id":"x","eventType":"t","data":{deep}}}"#);
    for provider in Provider::ALL {
        for body in [deep.as_bytes(), in_detail.as_bytes(), in_data.as_bytes()] {
            match providers::normalize(*provider, body) {
                // Rejected (nesting limit, wrong shape, missing fields): fine, as long as it is
                // an error and not a crash.
                Err(e) => assert!(!e.to_string().is_empty(), "{provider}"),
                Ok(p) => assert!(
                    p.events.is_empty(),
                    "{provider}: deep input produced events"
                ),
            }
        }
    }
}

#[test]
fn oversized_input_is_rejected_before_parsing() {
    let mut body = br#"{"id":""#.to_vec();
    body.resize(MAX_MESSAGE_BYTES + 10, b'a');
    for provider in Provider::ALL {
        assert_eq!(
            providers::normalize(*provider, &body).unwrap_err().kind(),
            "too_large"
        );
    }
}
