use super::*;

const T0: i64 = 1_795_392_000; // 2026-11-23T00:00:00Z

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

/// An interruption of `instance` in `pool`, on m5.large in use1-az4 (us-east-1a).
fn notice<'a>(signal: Signal, secs: i64, pool: &'a str, instance: &'a str) -> Observation<'a> {
    let mut o = Observation::new(signal, at(secs), instance);
    o.provider = Some("aws");
    o.account = Some("123456789012");
    o.region = Some("us-east-1");
    o.pool = Some(pool);
    o.instance_type = Some("m5.large");
    o.zone = Some("us-east-1a");
    o.zone_id = Some("use1-az4");
    o.capacity_type = Some("spot");
    o
}

fn pool<'s>(stats: &'s Stats, name: &str) -> &'s PoolStats {
    stats.pools.iter().find(|p| p.pool == name).unwrap()
}

fn rows(n: u32) -> Vec<Census<'static>> {
    vec![Census {
        instance_type: Some("m5.large"),
        zone: Some("us-east-1a"),
        zone_id: Some("use1-az4"),
        nodes: n,
    }]
}

#[test]
fn interruptions_count_per_pool_and_per_type_and_zone_keyed_by_az_id() {
    let mut a = Analytics::default();
    a.observe(&notice(Signal::Interruption, 0, "web", "i-1"));
    a.observe(&notice(Signal::Interruption, 600, "web", "i-2"));
    let mut other_zone = notice(Signal::Interruption, 900, "batch", "i-3");
    other_zone.zone = Some("us-east-1b");
    other_zone.zone_id = Some("use1-az6");
    a.observe(&other_zone);
    let stats = a.stats(at(900));
    assert_eq!(pool(&stats, "web").stats.interruptions, 2);
    assert_eq!(pool(&stats, "batch").stats.interruptions, 1);
    assert_eq!(stats.total.stats.interruptions, 3);
    let zones: Vec<(&str, u64)> = stats
        .capacity
        .iter()
        .map(|c| (c.zone.as_str(), c.stats.interruptions))
        .collect();
    assert_eq!(zones, [("use1-az4", 2), ("use1-az6", 1)]);
    assert_eq!(stats.capacity[0].zone_name.as_deref(), Some("us-east-1a"));
    assert_eq!(stats.events.interruption, 3);
    assert_eq!(stats.window.hours, 0.25);
}

#[test]
fn a_zone_named_without_its_id_takes_the_id_other_events_of_the_account_gave_it() {
    let mut a = Analytics::default();
    a.observe(&notice(Signal::Interruption, 0, "web", "i-1"));
    let mut shelter = Observation::new(Signal::PoolAtRisk, at(2), "m5.large/us-east-1a");
    shelter.account = Some("123456789012");
    shelter.instance_type = Some("m5.large");
    shelter.zone = Some("us-east-1a");
    a.observe(&shelter);
    let mut other_account = shelter.clone();
    other_account.account = Some("999999999999");
    a.observe(&other_account);
    let stats = a.stats(at(2));
    let by_zone: Vec<(&str, u64)> = stats
        .capacity
        .iter()
        .map(|c| (c.zone.as_str(), c.pools_at_risk))
        .collect();
    // Another account's us-east-1a may be another AZ: it keeps its name.
    assert_eq!(by_zone, [("us-east-1a", 1), ("use1-az4", 1)]);
}

#[test]
fn a_second_notice_for_the_same_instance_is_a_repeat() {
    let mut a = Analytics::default();
    a.observe(&notice(Signal::Interruption, 0, "aks", "/vm/3"));
    a.observe(&notice(Signal::Interruption, 40, "aks", "/vm/3"));
    // Much later, the same id again (a reused VM id): a new interruption.
    a.observe(&notice(Signal::Interruption, 5 * 3600, "aks", "/vm/3"));
    let stats = a.stats(at(5 * 3600));
    assert_eq!(pool(&stats, "aks").stats.interruptions, 2);
    assert_eq!(stats.events.repeat_notices, 1);
    assert_eq!(stats.events.interruption, 3);
}

#[test]
fn rebalances_are_followed_when_the_instance_is_interrupted_within_the_hour() {
    let mut a = Analytics::default();
    // Followed after 10 min.
    a.observe(&notice(Signal::Rebalance, 0, "web", "i-1"));
    a.observe(&notice(Signal::Interruption, 600, "web", "i-1"));
    // Interrupted after 70 min: not followed.
    a.observe(&notice(Signal::Rebalance, 100, "web", "i-2"));
    a.observe(&notice(Signal::Interruption, 100 + 4_200, "web", "i-2"));
    // Never interrupted: not followed once the hour has passed.
    a.observe(&notice(Signal::Rebalance, 200, "web", "i-3"));
    // The stream's order is not the signals' order: the interruption line came first.
    a.observe(&notice(Signal::Interruption, 300, "web", "i-4"));
    a.observe(&notice(Signal::Rebalance, 250, "web", "i-4"));
    // A repeated recommendation counts once.
    a.observe(&notice(Signal::Rebalance, 4_300, "web", "i-5"));
    a.observe(&notice(Signal::Rebalance, 4_310, "web", "i-5"));
    let stats = a.stats(at(4_400));
    let r = &pool(&stats, "web").stats.rebalance;
    assert_eq!(r.recommendations, 5);
    assert_eq!((r.followed, r.not_followed, r.undecided), (2, 2, 1));
    assert_eq!(r.share_followed, Some(0.5));
    assert_eq!(r.lead_seconds.count, 2);
    assert_eq!(r.lead_seconds.p90, Some(600.0));
    assert_eq!(stats.events.repeat_notices, 1);
    // The capacity view agrees.
    assert_eq!(stats.capacity[0].stats.rebalance.followed, 2);
    // Once the last one's hour is over, it is decided.
    let later = a.stats(at(4_300 + 3_601));
    let r = &pool(&later, "web").stats.rebalance;
    assert_eq!((r.followed, r.not_followed, r.undecided), (2, 3, 0));
}

#[test]
fn the_burst_factor_is_the_share_of_interruptions_within_three_minutes_of_another() {
    let mut a = Analytics::default();
    // Another pool's interruption at 1,010 is not part of the batch pool's burst.
    let times = [
        (0, "batch"),
        (60, "batch"),
        (170, "batch"),
        (1_000, "batch"),
    ];
    let more = [(1_010, "web"), (5_000, "batch"), (5_100, "batch")];
    for (i, (secs, pool)) in times.into_iter().chain(more).enumerate() {
        a.observe(&notice(Signal::Interruption, secs, pool, &format!("i-{i}")));
    }
    let stats = a.stats(at(5_100));
    let batch = &pool(&stats, "batch").stats;
    assert_eq!(batch.interruptions_in_bursts, 5);
    assert_eq!(batch.burst_factor, Some(0.833));
    assert_eq!(pool(&stats, "web").stats.burst_factor, Some(0.0));
    assert_eq!(stats.total.stats.interruptions_in_bursts, 5);
    // Per (type, zone), both pools share m5.large in use1-az4: 1,000 and 1,010 pair up.
    assert_eq!(stats.capacity[0].stats.interruptions_in_bursts, 7);
}

#[test]
fn node_hours_integrate_the_census_and_give_the_rate() {
    let mut a = Analytics::default();
    a.census(at(0), "web", &rows(10));
    a.census(at(1_800), "web", &rows(20));
    a.observe(&notice(Signal::Interruption, 2_000, "web", "i-1"));
    // 10 nodes for 30 min, then 20 held until the snapshot 30 min later: 5 + 10.
    let stats = a.stats(at(3_600));
    let web = &pool(&stats, "web").stats;
    assert_eq!(web.node_hours, Some(15.0));
    assert_eq!(web.interruptions_per_1000_node_hours, Some(66.7));
    assert_eq!(stats.capacity[0].stats.node_hours, Some(15.0));
    // A census holds for at most the gap (1 h): a router that stopped stops counting.
    let stats = a.stats(at(1_800 + 5 * 3_600));
    assert_eq!(pool(&stats, "web").stats.node_hours, Some(5.0 + 20.0));
    // A pool without a census has unknown node-hours and rate.
    a.observe(&notice(Signal::Interruption, 2_100, "batch", "i-2"));
    let stats = a.stats(at(3_600));
    let batch = &pool(&stats, "batch").stats;
    assert_eq!(
        (batch.node_hours, batch.interruptions_per_1000_node_hours),
        (None, None)
    );
    // The total's rate is over the pools with a census only.
    assert_eq!(stats.total.stats.node_hours, Some(15.0));
    assert_eq!(
        stats.total.stats.interruptions_per_1000_node_hours,
        Some(66.7)
    );
}

#[test]
fn a_type_and_zone_the_census_no_longer_lists_has_no_nodes() {
    let mut a = Analytics::default();
    let two = vec![
        rows(10)[0],
        Census {
            instance_type: Some("m5a.large"),
            ..rows(4)[0]
        },
    ];
    a.census(at(0), "web", &two);
    a.census(at(1_800), "web", &rows(10));
    let stats = a.stats(at(3_600));
    let m5a = stats
        .capacity
        .iter()
        .find(|c| c.instance_type == "m5a.large")
        .unwrap();
    assert_eq!(m5a.stats.node_hours, Some(2.0));
    assert_eq!(pool(&stats, "web").stats.node_hours, Some(12.0));
    // A census older than the one kept changes nothing.
    a.census(at(900), "web", &rows(1_000));
    assert_eq!(
        pool(&a.stats(at(3_600)), "web").stats.node_hours,
        Some(12.0)
    );
    let details = a.pool_stats("web", at(3_600)).unwrap();
    let nodes: Vec<(Option<&str>, u32)> = details
        .capacity
        .iter()
        .map(|r| (r.instance_type.as_deref(), r.nodes))
        .collect();
    assert_eq!(nodes, [(Some("m5.large"), 10), (Some("m5a.large"), 0)]);
}

#[test]
fn lifetimes_need_the_nodes_creation() {
    let mut a = Analytics::default();
    for (i, minutes) in [90, 150, 180, 600].into_iter().enumerate() {
        let id = format!("i-{i}");
        let mut o = notice(Signal::Interruption, 86_400, "web", &id);
        o.node_created_at = Some(at(86_400 - minutes * 60));
        a.observe(&o);
    }
    a.observe(&notice(
        Signal::Interruption,
        86_400,
        "web",
        "i-no-creation",
    ));
    let stats = a.stats(at(86_400));
    let l = &pool(&stats, "web").stats.lifetime_seconds;
    assert_eq!(l.count, 4);
    assert_eq!(pool(&stats, "web").stats.interruptions, 5);
    assert!((l.p50.unwrap() - 9_000.0).abs() <= 90.0, "{l:?}");
    assert_eq!(l.p90, Some(36_000.0), "the largest, exactly");
    let lifetimes = &stats.charts.lifetimes[0];
    assert_eq!(lifetimes.counts.iter().sum::<u64>(), 4);
    assert_eq!(
        &lifetimes.counts[3..7],
        [1, 2, 0, 1],
        "[1 h, 2 h), [2 h, 4 h), ..., [8 h, 12 h)"
    );
}

#[test]
fn recovery_phases_come_from_replacements_and_from_the_live_side() {
    let mut a = Analytics::default();
    for (i, s) in [60.0, 90.0, 120.0, 600.0].into_iter().enumerate() {
        let id = format!("n-{i}");
        let mut o = notice(Signal::ReplacementReady, 100, "web", &id);
        o.phases.set(Phase::ReplacementReady, s);
        o.phases.set(Phase::Cordoned, 0.5);
        a.observe(&o);
    }
    a.phase("web", Phase::PodsRunning, 200.0);
    let stats = a.stats(at(100));
    let r = &pool(&stats, "web").recovery_seconds;
    assert_eq!(r.replacement_ready.count, 4);
    assert_eq!(r.replacement_ready.p99, Some(600.0));
    assert_eq!(r.cordoned.p50, Some(0.5));
    assert_eq!(r.pods_running.count, 1);
    assert_eq!(r.drained.p50, None);
    assert_eq!(stats.total.recovery_seconds.replacement_ready.count, 4);
}

#[test]
fn events_of_other_capacity_types_are_left_out() {
    let mut a = Analytics::default();
    let mut o = notice(Signal::Interruption, 0, "web", "i-1");
    o.capacity_type = Some("on_demand");
    a.observe(&o);
    o.capacity_type = Some("SPOT");
    a.observe(&o);
    let stats = a.stats(at(0));
    assert_eq!(stats.events.not_spot, 1);
    assert_eq!(stats.total.stats.interruptions, 1);
}

#[test]
fn events_without_a_pool_or_type_go_to_unknown_and_beyond_the_cap_to_other() {
    let mut a = Analytics::new(Config {
        max_pools: 2,
        ..Config::default()
    });
    a.observe(&Observation::new(Signal::Interruption, at(0), "i-0"));
    for (i, p) in ["a", "b", "c", "d"].into_iter().enumerate() {
        a.observe(&notice(
            Signal::Interruption,
            10 * i as i64 + 10,
            p,
            &format!("i-{p}"),
        ));
    }
    let stats = a.stats(at(100));
    let names: Vec<(&str, u64)> = stats
        .pools
        .iter()
        .map(|p| (p.pool.as_str(), p.stats.interruptions))
        .collect();
    assert_eq!(names, [("a", 1), ("b", 1), (OTHER, 2), (UNKNOWN, 1)]);
    let unknown = stats.capacity.iter().find(|c| c.zone == UNKNOWN).unwrap();
    assert_eq!(unknown.instance_type, UNKNOWN);
}

#[test]
fn the_series_coarsens_to_stay_within_its_buckets() {
    let mut a = Analytics::default();
    for day in 0..60 {
        a.observe(&notice(
            Signal::Interruption,
            day * 86_400,
            "web",
            &format!("i-{day}"),
        ));
    }
    let stats = a.stats(at(59 * 86_400));
    let c = &stats.charts;
    assert_eq!(
        c.bucket_seconds, 10_800,
        "60 days in at most 512 buckets of 3 h"
    );
    let counts = &c.interruptions[0].counts;
    assert!(counts.len() <= 512);
    assert_eq!(counts.iter().sum::<u64>(), 60);
    assert_eq!(c.start, Some(at(0)));
}

#[test]
fn memory_stays_bounded_over_a_long_stream() {
    let mut a = Analytics::default();
    // 200,000 notices over 200 days, every instance new: only the last hour is remembered.
    for i in 0..200_000i64 {
        let id = format!("i-{i}");
        let signal = if i % 3 == 0 {
            Signal::Rebalance
        } else {
            Signal::Interruption
        };
        a.observe(&notice(signal, i * 86, "web", &id));
    }
    assert!(
        a.instances.len() < 200,
        "{} instances remembered",
        a.instances.len()
    );
    let g = &a.pools.groups[0];
    assert!(g.series.len() <= 512);
    let stats = a.stats(at(200_000 * 86));
    let r = &pool(&stats, "web").stats.rebalance;
    assert_eq!(r.recommendations, 66_667);
    assert_eq!(r.followed + r.not_followed + r.undecided, 66_667);
}

#[test]
fn pool_stats_details_carry_the_census_back_into_a_report() {
    let mut live = Analytics::default();
    live.census(at(0), "web", &rows(12));
    live.observe(&notice(Signal::Interruption, 300, "web", "i-1"));
    live.census(at(600), "web", &rows(12));
    let details = live.pool_stats("web", at(600)).unwrap();
    assert_eq!(details.pool, "web");
    assert_eq!(details.since, Some(at(0)));
    assert_eq!(details.stats.stats.interruptions, 1);
    assert_eq!(details.stats.stats.node_hours, Some(2.0));
    let map = details.to_details();
    assert_eq!(map["capacity"][0]["zone_id"], "use1-az4");
    assert_eq!(map["capacity"][0]["nodes"], 12);
    assert!(live.pool_stats("nope", at(600)).is_none());

    // A report over the stream reads the census from the event's details.
    let line = serde_json::json!({
        "data": {
            "kind": "pool_stats",
            "provider": "aws",
            "account": "123456789012",
            "instance": {"id": "web"},
            "occurred_at": "2026-11-23T00:10:00Z",
            "details": map,
        }
    })
    .to_string();
    let mut report = Analytics::default();
    report.census(at(0), "web", &rows(12));
    let parsed = Line::parse(line.as_bytes()).unwrap();
    report.observe(&parsed.observation().unwrap().unwrap());
    let stats = report.stats(at(600));
    assert_eq!(pool(&stats, "web").stats.node_hours, Some(2.0));
    assert_eq!(stats.events.pool_stats, 1);
}

#[test]
fn the_observation_of_an_event_equals_that_of_its_json_line() {
    use crate::event::{Event, EventData, Instance, Kind, NodeRef, Provider};
    let instance = Instance {
        id: "i-0b662ef9931388ba0".into(),
        name: None,
        provider_id: Some("aws:///us-east-1a/i-0b662ef9931388ba0".into()),
        resource_id: None,
    };
    let mut data = EventData::new(Provider::Aws, Kind::Interruption, "x", instance, at(0));
    data.account = Some("123456789012".into());
    data.region = Some("us-east-1".into());
    data.zone = Some("us-east-1a".into());
    data.node = Some(NodeRef {
        name: "ip-10-0-0-1".into(),
    });
    let d = &mut data.details;
    d.insert("pool".into(), "web".into());
    d.insert("instance_type".into(), "m5.large".into());
    d.insert("zone_id".into(), "use1-az4".into());
    d.insert("capacity_type".into(), "spot".into());
    d.insert("node_created_at".into(), "2026-11-22T18:00:00.5Z".into());
    d.insert("latency_seconds".into(), 95.5.into());
    d.insert(
        "phases".into(),
        serde_json::json!({"cordoned": 0.4, "drained": 60, "bogus": 1}),
    );
    let event = Event::new("e-1", data);
    let line = event.to_json_line();
    let parsed = Line::parse(line.as_bytes()).unwrap();
    let from_line = parsed.observation().unwrap().unwrap();
    let from_event = Observation::of_event(&event).unwrap();
    assert_eq!(from_line, from_event);
    assert_eq!(from_line.phases.get(Phase::Drained), Some(60.0));
    assert_eq!(from_line.phases.get(Phase::ReplacementReady), Some(95.5));
    assert_eq!(
        from_line.node_created_at,
        Some("2026-11-22T18:00:00.5Z".parse().unwrap())
    );
}

/// Feeds the lines of the recorded stream `from..to` to `a`.
fn feed(a: &mut Analytics, lines: &[&str]) {
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let line = Line::parse_str(line).unwrap();
        if let Some(obs) = line.observation().unwrap() {
            a.observe(&obs);
        }
    }
}

#[test]
fn statistics_saved_and_restored_midway_continue_as_if_never_stopped() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/report/pools.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, rest) = lines.split_at(lines.len() / 2);
    let mut whole = Analytics::default();
    feed(&mut whole, &lines);
    let mut before = Analytics::default();
    feed(&mut before, first);
    let saved = before.save().unwrap();
    assert!(saved.len() < MAX_STATE_BYTES);
    let mut after = Analytics::restore(Config::default(), &saved).unwrap();
    assert_eq!(after.stats(at(0)), before.stats(at(0)), "restored as saved");
    feed(&mut after, rest);
    let end = at(90 * 86_400);
    assert_eq!(after.stats(end), whole.stats(end));
    assert!(after.stats(end).total.stats.interruptions > 0);
    // New names still find their groups (the index is rebuilt).
    after.observe(&notice(
        Signal::Interruption,
        86_400 * 91,
        "web-restored",
        "i-new",
    ));
    assert_eq!(
        pool(&after.stats(end), "web-restored").stats.interruptions,
        1
    );
}

#[test]
fn a_damaged_or_foreign_state_is_refused_with_its_reason() {
    let saved = Analytics::default().save().unwrap();
    let cut = &saved[..saved.len() / 2];
    assert_eq!(
        Analytics::restore(Config::default(), cut)
            .unwrap_err()
            .kind(),
        "gzip"
    );
    assert_eq!(
        Analytics::restore(Config::default(), b"{}")
            .unwrap_err()
            .kind(),
        "gzip"
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, br#"{"version": 9, "stats": {}}"#).unwrap();
    let foreign = gz.finish().unwrap();
    let e = Analytics::restore(Config::default(), &foreign).unwrap_err();
    assert_eq!(e.kind(), "version");
    assert!(e.to_string().contains("version 9"), "{e}");
}
