use super::*;

fn observe(line: &str) -> Result<Option<Observation<'static>>, LineError> {
    // Leaked for the test's convenience: the observation borrows the line.
    let line: &'static Line<'static> = Box::leak(Box::new(Line::parse(Box::leak(
        line.as_bytes().to_vec().into_boxed_slice(),
    ))?));
    line.observation()
}

#[test]
fn the_fast_timestamp_path_agrees_with_jiff() {
    for s in [
        "2026-11-23T10:00:00Z",
        "2026-11-23T10:00:00.5Z",
        "2024-02-29T23:59:59.123456789Z",
        "2000-02-29T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2100-03-01T12:30:45.000001Z",
    ] {
        let want: Timestamp = s.parse().unwrap();
        assert_eq!(fast_utc(s.as_bytes()), Some(want), "{s}");
        assert_eq!(parse_time(s), Some(want), "{s}");
    }
    // Other forms go to jiff's parser; nonsense is rejected by both.
    assert_eq!(
        parse_time("2026-11-23T11:00:00+01:00"),
        Some("2026-11-23T10:00:00Z".parse().unwrap())
    );
    // Not the fast path's; jiff decides (it takes a space for the `T`, say).
    for other in [
        "2026-02-29T00:00:00Z",
        "2100-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-11-23T24:00:00Z",
        "2026-11-23T10:00:00.Z",
        "2026-11-23 10:00:00Z",
        "yesterday",
        "",
    ] {
        assert_eq!(fast_utc(other.as_bytes()), None, "{other}");
        assert_eq!(parse_time(other), other.parse().ok(), "{other}");
    }
}

const BASE: &str = r#"{"specversion":"1.0","id":"x","type":"eviction-router.interruption.v1",
  "data":{"schema_version":1,"kind":"interruption","provider":"aws","account":"1","region":"us-east-1",
  "zone":"us-east-1a","instance":{"id":"i-1","name":null},"occurred_at":"2026-11-23T10:00:00Z",
  "deadline":"2026-11-23T10:02:00Z","node":{"name":"n"},"details":DETAILS}}"#;

fn with_details(details: &str) -> String {
    BASE.replace("DETAILS", details)
}

#[test]
fn details_of_other_types_are_skipped_not_errors() {
    for details in [
        "{}",
        "null",
        "[]",
        "\"text\"",
        r#"{"pool":7,"instance_type":["m5"],"zone":{"a":1},"zone_id":null,"capacity_type":true}"#,
        r#"{"node_created_at":12,"latency_seconds":"fast","phases":[1,2,3,4,5,6],"capacity":{"nodes":3}}"#,
        r#"{"phases":{"cordoned":"soon","drained":null},"capacity":[1,"x",null,{"nodes":-1},{"nodes":2.5}]}"#,
        r#"{"node_created_at":"long ago"}"#,
    ] {
        let obs = observe(&with_details(details)).unwrap().unwrap();
        assert_eq!(obs.pool, None, "{details}");
        assert_eq!(obs.instance_type, None, "{details}");
        assert_eq!(obs.zone, Some("us-east-1a"), "{details}");
        assert_eq!(obs.node_created_at, None, "{details}");
        assert_eq!(obs.phases, Phases::default(), "{details}");
        assert!(obs.census.is_empty(), "{details}");
    }
}

#[test]
fn the_routers_details_are_read() {
    let obs = observe(&with_details(
        r#"{"pool":"spot\u002dweb","instance_type":"m5.large","zone":"us-east-1a","zone_id":"use1-az4",
            "capacity_type":"spot","node_created_at":"2026-11-23T04:00:00Z","hook":{"deep":[{"x":1}]},
            "phases":{"cordoned":0.25,"drained":61,"replacement_ready":95.5,"pods_running":130},
            "capacity":[{"instance_type":"m5.large","zone":"us-east-1a","zone_id":"use1-az4","nodes":12},
                        {"zone":"us-east-1b","nodes":0}]}"#,
    ))
    .unwrap()
    .unwrap();
    assert_eq!(obs.signal, Signal::Interruption);
    assert_eq!(obs.pool, Some("spot-web"), "an escaped string is unescaped");
    assert_eq!(obs.zone_id, Some("use1-az4"));
    assert_eq!(obs.account, Some("1"));
    assert_eq!(
        obs.node_created_at,
        Some("2026-11-23T04:00:00Z".parse().unwrap())
    );
    let phases: Vec<(Phase, f64)> = obs.phases.iter().collect();
    assert_eq!(
        phases,
        [
            (Phase::Cordoned, 0.25),
            (Phase::Drained, 61.0),
            (Phase::ReplacementReady, 95.5),
            (Phase::PodsRunning, 130.0)
        ]
    );
    assert_eq!(obs.census.len(), 2);
    assert_eq!(obs.census[1].instance_type, None);
    assert_eq!(obs.census[1].nodes, 0);
}

#[test]
fn the_nodes_zone_label_wins_over_the_providers_zone() {
    let obs = observe(&with_details(r#"{"zone":"westeurope-2"}"#))
        .unwrap()
        .unwrap();
    assert_eq!(obs.zone, Some("westeurope-2"));
}

#[test]
fn kinds_the_statistics_do_not_know_are_none() {
    let line = with_details("{}").replace("\"interruption\"", "\"future_kind\"");
    assert_eq!(observe(&line).unwrap(), None);
    assert_eq!(Signal::from_kind("pool_stats"), Some(Signal::PoolStats));
    for kind in crate::event::Kind::ALL {
        assert_eq!(Signal::from_kind(kind.as_str()), Signal::of(*kind));
    }
    assert_eq!(Signal::of(crate::event::Kind::Failback), None);
}

#[test]
fn lines_that_are_not_events_are_errors() {
    let no_time = with_details("{}").replace(r#""occurred_at":"2026-11-23T10:00:00Z","#, "");
    let bad_time = with_details("{}").replace("2026-11-23T10:00:00Z", "tomorrow");
    let no_instance = with_details("{}").replace(r#""instance":{"id":"i-1","name":null},"#, "");
    let numeric_kind = with_details("{}").replace("\"interruption\"", "3");
    for (line, kind) in [
        ("{not json", "shape"),
        ("[]", "shape"),
        (r#"{"data":{}}"#, "shape"),
        (no_time.as_str(), "shape"),
        (no_instance.as_str(), "shape"),
        (numeric_kind.as_str(), "shape"),
        (bad_time.as_str(), "time"),
    ] {
        let err = observe(line).unwrap_err();
        assert_eq!(err.kind(), kind, "{line}: {err}");
    }
}

#[test]
fn impossible_dates_are_rejected() {
    for bad in [
        "2026-02-29T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-11-23T24:00:00Z",
        "yesterday",
        "",
    ] {
        assert_eq!(parse_time(bad), None, "{bad}");
    }
}

#[test]
fn only_the_data_object_is_parsed_when_data_is_last() {
    assert_eq!(
        data_object(r#"{"id":"a","data":{"kind":"x"}}"#),
        Some(r#"{"kind":"x"}"#)
    );
    assert_eq!(
        data_object("{\"id\":\"a\" , \"data\":{\"kind\":\"x\"} }  "),
        Some("{\"kind\":\"x\"} ")
    );
    // A `{` inside an attribute's string: not taken for `data`'s (the whole line is parsed).
    assert_eq!(data_object(r#"{"id":"\"data\":{","data":{"k":1}}"#), None);
    assert_eq!(data_object(r#"{"id":"{","data":{"k":1}}"#), None);
    assert_eq!(data_object(r#"{"x":{"data":1},"data":{"k":1}}"#), None);
    assert_eq!(data_object(r#"{"id":"a"}"#), None);
    assert_eq!(data_object(r#"{"id":"a","data":{"k":1}]"#), None);
    // `data` not last: the slice is not one value, so the whole line is parsed.
    let line = with_details("{}");
    let moved = line.replacen(
        "{\"specversion\"",
        "{\"data\":{\"kind\":\"termination\"},\"x\":{\"specversion\"",
        1,
    );
    assert!(data_object(&moved).is_some());
    let line = r#"{"data":{"kind":"interruption","instance":{"id":"i"},"occurred_at":"2026-11-23T10:00:00Z"},"id":"x"}"#;
    let obs = observe(line).unwrap().unwrap();
    assert_eq!(obs.instance, "i");
}

#[test]
fn escaped_strings_are_detached_only_when_borrowed() {
    let plain = with_details(r#"{"pool":"web"}"#);
    let line = Line::parse(plain.as_bytes()).unwrap();
    let obs = line.detached_observation().unwrap().unwrap().unwrap();
    drop(line);
    assert_eq!(obs.pool, Some("web"), "outlives the Line");
    let escaped = with_details(r#"{"pool":"w\u0065b"}"#);
    let line = Line::parse(escaped.as_bytes()).unwrap();
    assert_eq!(line.detached_observation().unwrap(), Err(Escaped));
    assert_eq!(line.observation().unwrap().unwrap().pool, Some("web"));
}

#[test]
fn bytes_are_found_wherever_they_are() {
    let mut text = vec![b'a'; 200];
    assert_eq!(find_byte(&text, b'\n'), None);
    assert_eq!(find_byte(&[], b'\n'), None);
    for at in [0, 1, 7, 8, 31, 32, 33, 63, 64, 100, 199] {
        text[at] = b'\n';
        assert_eq!(find_byte(&text, b'\n'), Some(at), "at {at}");
        assert_eq!(find_byte(&text[..at], b'\n'), None);
        text[at] = b'a';
    }
    // Bytes next to the one sought (borrows in the word test) do not confuse it.
    let text = b"\x0b\x09\x0a\x0b";
    assert_eq!(find_byte(text, b'\n'), Some(2));
    let text: Vec<u8> = (0..=255u8).collect();
    for b in 0..=255u8 {
        assert_eq!(find_byte(&text, b), Some(usize::from(b)));
    }
}
