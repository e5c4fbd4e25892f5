use super::*;
use crate::event::Provider;

fn sample() -> Event {
    let body = include_str!("../../../tests/fixtures/aws/spot-interruption-warning.json");
    let mut parsed = crate::providers::normalize(Provider::Aws, body.as_bytes()).unwrap();
    parsed.events.remove(0)
}

#[test]
fn tokens_with_dots_wildcards_or_whitespace_are_escaped_reversibly() {
    assert_eq!(escape_token("prod-eu1"), "prod-eu1");
    assert_eq!(escape_token("m5.large"), "m5%2Elarge");
    assert_eq!(escape_token("a*b>c"), "a%2Ab%3Ec");
    assert_eq!(escape_token("with space\ttab"), "with%20space%09tab");
    assert_eq!(escape_token("100%"), "100%25");
    assert_eq!(escape_token(""), "_");
    assert_eq!(escape_token("ü.x"), "ü%2Ex", "non-ASCII letters stay");
    for raw in ["m5.large", "a*b>c", "x y", "100%", "eu.west.1"] {
        let escaped = escape_token(raw);
        assert!(!escaped.contains(['.', '*', '>', ' ']), "{escaped}");
    }
}

#[test]
fn the_subject_has_four_parts_whatever_the_cluster_name() {
    let event = sample();
    assert_eq!(
        subject("eviction-router", "prod", &event),
        "eviction-router.prod.aws.interruption"
    );
    assert_eq!(
        subject("fleet.events", "eu.prod *", &event),
        "fleet.events.eu%2Eprod%20%2A.aws.interruption"
    );
}

#[test]
fn prefixes_with_empty_tokens_wildcards_or_spaces_are_refused() {
    assert!(check_prefix("eviction-router").is_ok());
    assert!(check_prefix("fleet.events").is_ok());
    for bad in ["", ".a", "a.", "a..b", "a.*", "a.>", "a b", "a.b*"] {
        assert!(check_prefix(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_message_id_is_source_and_id() {
    let event = sample();
    assert_eq!(
        message_id(&event),
        "/aws/123456789012/us-east-1/1e5527d7-bb36-4607-3370-4164db56a40e"
    );
}

#[test]
fn binary_mode_carries_the_attributes_in_ce_headers_and_the_data_as_the_body() {
    let event = sample();
    let (headers, body) = encode(&event, "prod", NatsMode::Binary);
    let h = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(h("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(
        h("ce-id").as_deref(),
        Some("1e5527d7-bb36-4607-3370-4164db56a40e")
    );
    assert_eq!(
        h("ce-source").as_deref(),
        Some("/aws/123456789012/us-east-1")
    );
    assert_eq!(
        h("ce-type").as_deref(),
        Some("eviction-router.interruption.v1")
    );
    assert_eq!(h("ce-subject").as_deref(), Some("i-0b662ef9931388ba0"));
    assert_eq!(h("ce-time").as_deref(), Some("1970-01-01T00:00:00Z"));
    assert_eq!(h("ce-cluster").as_deref(), Some("prod"));
    assert_eq!(h("Content-Type").as_deref(), Some("application/json"));
    assert_eq!(
        h("Nats-Msg-Id").as_deref(),
        Some("/aws/123456789012/us-east-1/1e5527d7-bb36-4607-3370-4164db56a40e")
    );
    let data: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(data, serde_json::to_value(&event.data).unwrap());

    // Decoded, it is the structured event plus the cluster attribute.
    let decoded = decode(Some(&headers), &body).unwrap();
    let mut expected = serde_json::to_value(&event).unwrap();
    expected["cluster"] = "prod".into();
    assert_eq!(decoded, expected);
}

#[test]
fn structured_mode_carries_the_whole_event_with_the_cluster_attribute() {
    let event = sample();
    let (headers, body) = encode(&event, "prod", NatsMode::Structured);
    assert_eq!(
        headers.get("Content-Type").map(|v| v.as_str()),
        Some(CONTENT_TYPE_STRUCTURED)
    );
    assert!(headers.get("ce-id").is_none());
    assert!(headers.get("Nats-Msg-Id").is_some());
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["cluster"], "prod");
    assert_eq!(value["id"], event.id.as_str());
    assert_eq!(decode(Some(&headers), &body).unwrap(), value);
    assert_eq!(decode(None, b"not json"), None);
}

#[test]
fn header_values_never_carry_line_breaks() {
    assert_eq!(header_value("a\r\nb").as_str(), "a%0D%0Ab");
    let mut event = sample();
    event.id = "evil\r\nNats-Msg-Id: other".into();
    let (headers, _) = encode(&event, "prod", NatsMode::Binary);
    assert_eq!(
        headers.get("ce-id").map(|v| v.as_str()),
        Some("evil%0D%0ANats-Msg-Id: other")
    );
}

#[test]
fn reconnects_back_off_with_jitter_up_to_the_cap() {
    assert_eq!(reconnect_delay(0), Duration::ZERO);
    assert_eq!(reconnect_delay(1), Duration::ZERO);
    let d2 = reconnect_delay(2);
    assert!(
        d2 >= Duration::from_millis(50) && d2 <= Duration::from_millis(100),
        "{d2:?}"
    );
    for n in [10, 100, usize::MAX] {
        let d = reconnect_delay(n);
        assert!(
            d >= MAX_RECONNECT_DELAY / 2 && d <= MAX_RECONNECT_DELAY,
            "{n}: {d:?}"
        );
    }
}

#[test]
fn credentials_in_urls_are_not_logged() {
    assert_eq!(
        redact("nats://user:secret@a:4222, nats://b:4222"),
        "nats://***@a:4222,nats://b:4222"
    );
}
