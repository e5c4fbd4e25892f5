use super::*;

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, env(&[]))
}

#[test]
fn the_embedded_default_is_ingest_dry_run_stdout() {
    let c = Config::parse(EMBEDDED_DEFAULT, env(&[])).unwrap();
    assert!(matches!(c.sources[..], [SourceConfig::HttpIngest(_)]));
    assert_eq!(c.cluster.mode, ClusterMode::DryRun);
    assert!(matches!(c.sinks[..], [SinkConfig::Stdout]));
    assert!(c.server.listen.ip().is_loopback());
}

#[test]
fn the_aws_example_parses_with_its_variable_set() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/config/aws.yaml"
    ))
    .unwrap();
    let c = Config::parse(
        &text,
        env(&[(
            "EVICTION_ROUTER_SQS_QUEUE_URL",
            "http://127.0.0.1:5000/123/q",
        )]),
    )
    .unwrap();
    let SourceConfig::AwsSqs(sqs) = &c.sources[0] else {
        panic!("not sqs")
    };
    assert_eq!(sqs.queue_url, "http://127.0.0.1:5000/123/q");
    assert_eq!(
        (sqs.pollers, sqs.max_messages, sqs.wait_time_seconds),
        (2, 10, 20)
    );
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let err = parse("sources:\n  - type: http_ingest\nrouter:\n  concurency: 3\n").unwrap_err();
    assert!(err.to_string().contains("concurency"), "{err}");
    let err = parse("sources:\n  - type: aws_sqs\n    queue_url: https://q\n    poller: 3\n")
        .unwrap_err();
    assert!(err.to_string().contains("poller"), "{err}");
    let err = parse("sources:\n  - type: kafka\n").unwrap_err();
    assert!(err.to_string().contains("kafka"), "{err}");
}

#[test]
fn out_of_range_values_name_their_key() {
    let cases = [
        ("sources: []\n", "sources"),
        (
            "sources:\n  - type: aws_sqs\n    queue_url: q\n",
            "sources[0].queue_url",
        ),
        (
            "sources:\n  - type: aws_sqs\n    queue_url: https://q\n    max_messages: 11\n",
            "sources[0].max_messages",
        ),
        (
            "sources:\n  - type: http_ingest\nrouter:\n  concurrency: 0\n",
            "router.concurrency",
        ),
        (
            "sources:\n  - type: http_ingest\nsinks:\n  - type: webhook\n    url: ftp://x\n",
            "sinks[0].url",
        ),
        (
            "sources:\n  - type: gcp_pubsub\n    subscription: my-sub\n",
            "sources[0].subscription",
        ),
        (
            "sources:\n  - type: azure_service_bus\n    namespace: n\n    queue: q\n    auth: sas\n",
            "sources[0].connection_string",
        ),
        (
            "sources:\n  - type: azure_service_bus\n    namespace: n\n    queue: q\n    auth: sas\n    connection_string: \"Endpoint=sb://n.servicebus.windows.net/;SharedAccessKeyName=k\"\n",
            "sources[0].connection_string",
        ),
        (
            "sources:\n  - type: azure_service_bus\n    namespace: n.servicebus.windows.net/x\n    queue: q\n    auth: workload_identity\n",
            "sources[0].namespace",
        ),
        (
            "sources:\n  - type: azure_service_bus\n    namespace: n\n    queue: q\n    auth: workload_identity\n    receivers: 0\n",
            "sources[0].receivers",
        ),
        (
            "sources:\n  - type: azure_service_bus\n    namespace: n\n    queue: q\n    auth: workload_identity\n    endpoint: 127.0.0.1:1\n",
            "sources[0].endpoint",
        ),
        (
            "sources:\n  - type: gcp_pubsub\n    subscription: projects/p/subscriptions/s\n    max_outstanding_messages: 0\n",
            "sources[0].max_outstanding_messages",
        ),
        (
            "sources:\n  - type: gcp_pubsub\n    subscription: projects//subscriptions/s\n",
            "sources[0].subscription",
        ),
        (
            "sources:\n  - type: gcp_pubsub\n    subscription: projects/p/subscriptions/s\n    health_check_seconds: 0\n",
            "sources[0].health_check_seconds",
        ),
        (
            "sources:\n  - type: azure_event_grid_webhook\n    secret: 0123456789abcdef\n    max_body_bytes: 10\n",
            "sources[0].max_body_bytes",
        ),
    ];
    for (text, key) in cases {
        let err = parse(text).unwrap_err();
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
}

#[test]
fn env_references_expand_and_missing_ones_are_errors_naming_the_key() {
    let text = "sources:\n  - type: aws_sqs\n    queue_url: ${QUEUE}\n";
    let c = Config::parse(text, env(&[("QUEUE", "https://sqs.example/1/q")])).unwrap();
    let SourceConfig::AwsSqs(sqs) = &c.sources[0] else {
        panic!()
    };
    assert_eq!(sqs.queue_url, "https://sqs.example/1/q");
    let err = parse(text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`sources[0].queue_url`: environment variable `QUEUE` is not set (write `$${` for a literal `${`)"
    );
    assert!(matches!(
        parse("sources:\n  - type: aws_sqs\n    queue_url: ${OPEN\n").unwrap_err(),
        ConfigError::UnclosedEnv { key } if key == "sources[0].queue_url"
    ));
}

#[test]
fn escaped_and_commented_references_are_left_alone() {
    let c = Config::parse(
        "# see ${NOT_SET}\nsources:\n  - type: aws_sqs\n    queue_url: https://q/$${LITERAL}\n",
        env(&[]),
    )
    .unwrap();
    let SourceConfig::AwsSqs(sqs) = &c.sources[0] else {
        panic!()
    };
    assert_eq!(sqs.queue_url, "https://q/${LITERAL}");
}

/// A variable's value is text inside the value it replaces: a newline, ` #`, quotes or YAML
/// syntax in a secret neither end it nor write other keys.
#[test]
fn env_values_with_yaml_syntax_stay_inside_their_value() {
    let text = "sources:\n  - type: azure_event_grid_webhook\n    secret: ${SECRET}\n";
    for secret in [
        "0123456789abcdef\n    max_body_bytes: 2048",
        "0123456789abcdef #not a comment",
        "0123456789abcdef\"' quoted",
        "0123456789abcdef: {x: [1]}",
        "${NOT_EXPANDED_AGAIN}0123456789",
    ] {
        let c = Config::parse(text, env(&[("SECRET", secret)])).unwrap();
        let SourceConfig::AzureEventGridWebhook(w) = &c.sources[0] else {
            panic!()
        };
        assert_eq!(w.secret, secret);
        assert_eq!(w.max_body_bytes, 1024 * 1024, "{secret:?}");
    }
    // Quoted in the file or not, the same.
    let quoted = "sources:\n  - type: azure_event_grid_webhook\n    secret: \"${SECRET}\"\n";
    let c = Config::parse(quoted, env(&[("SECRET", "0123456789abcdef #x")])).unwrap();
    let SourceConfig::AzureEventGridWebhook(w) = &c.sources[0] else {
        panic!()
    };
    assert_eq!(w.secret, "0123456789abcdef #x");
}

#[test]
fn a_wrong_type_inside_an_entry_names_its_key() {
    for (text, key) in [
        (
            "sources:\n  - type: aws_sqs\n    queue_url: https://q\n    pollers: many\n",
            "`sources[0].pollers`",
        ),
        (
            "sources:\n  - type: http_ingest\n  - type: gcp_pubsub\n    subscription: [1]\n",
            "`sources[1].subscription`",
        ),
        (
            "sources:\n  - type: http_ingest\nsinks:\n  - type: webhook\n    url: http://x\n    headers: {a: [1]}\n",
            "`sinks[0].headers.a`",
        ),
        (
            "sources:\n  - type: http_ingest\nrouter:\n  concurrency: -1\n",
            "`router.concurrency`",
        ),
        (
            "sources:\n  - type: http_ingest\nsinks:\n  - type: stdout\n    url: x\n",
            "`sinks[0]`",
        ),
        ("sources:\n  - queue_url: x\n", "`sources[0]`"),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with(key), "{text}: {err}");
    }
    let err = parse("sources:\n  - type: kafka\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown variant `kafka`"), "{err}");
}

/// Values large enough to panic or overflow in `run` are refused by `check-config`.
#[test]
fn values_run_could_not_honour_are_refused() {
    for (text, key) in [
        (
            "router:\n  queue_capacity: 18446744073709551615\n",
            "`router.queue_capacity`",
        ),
        (
            "router:\n  concurrency: 4611686018427387904\n",
            "`router.concurrency`",
        ),
        (
            "router:\n  dedupe_capacity: 18446744073709551615\n",
            "`router.dedupe_capacity`",
        ),
        (
            "router:\n  shutdown_grace_seconds: 18446744073709551615\n",
            "`router.shutdown_grace_seconds`",
        ),
        (
            "router:\n  message_timeout_seconds: 18446744073709551615\n",
            "`router.message_timeout_seconds`",
        ),
        (
            "router:\n  max_events_per_message: 0\n",
            "`router.max_events_per_message`",
        ),
        (
            "cluster:\n  maintenance_lead_seconds: 18446744073709551615\n",
            "`cluster.maintenance_lead_seconds`",
        ),
        (
            "cluster:\n  replacement_timeout_seconds: 18446744073709551615\n",
            "`cluster.replacement_timeout_seconds`",
        ),
        (
            "cluster:\n  drain_margin_seconds: 18446744073709551615\n",
            "`cluster.drain_margin_seconds`",
        ),
        (
            "sinks:\n  - type: webhook\n    url: http://x\n    queue_capacity: 18446744073709551615\n",
            "`sinks[0].queue_capacity`",
        ),
        (
            "sinks:\n  - type: webhook\n    url: http://x\n    timeout_seconds: 18446744073709551615\n",
            "`sinks[0].timeout_seconds`",
        ),
    ] {
        let err = parse(&format!("sources:\n  - type: http_ingest\n{text}")).unwrap_err();
        assert!(err.to_string().starts_with(key), "{text}: {err}");
    }
}

#[test]
fn omitted_sections_take_their_defaults() {
    let c = parse("sources:\n  - type: http_ingest\n").unwrap();
    assert_eq!(c.router.concurrency, 64);
    assert_eq!(c.cluster.mode, ClusterMode::Kubernetes);
    assert!(c.cluster.leader_election.enabled);
    assert!(matches!(c.sinks[..], [SinkConfig::Stdout]));
    assert_eq!(c.server.listen.port(), 8080);
}

#[test]
fn actions_can_be_switched_per_kind_and_need_all_four_switches() {
    let c = parse(
        "sources:\n  - type: http_ingest\ncluster:\n  actions:\n    interruption: {taint: true, cordon: true, drain: false, event: true}\n",
    )
    .unwrap();
    assert!(!c.cluster.actions.interruption.drain);
    assert!(
        c.cluster.actions.termination.drain,
        "other kinds keep their defaults"
    );
    assert!(!c.cluster.actions.rebalance_recommendation.cordon);
    let err = parse(
        "sources:\n  - type: http_ingest\ncluster:\n  actions:\n    interruption: {drain: false}\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("taint"), "{err}");
}

#[test]
fn a_connection_string_gives_its_parts_and_never_prints_its_key() {
    let cs = ConnectionString::parse(
        "Endpoint=sb://ns-1.servicebus.windows.net/;SharedAccessKeyName=router;SharedAccessKey=c2VjcmV0=;EntityPath=events",
    )
    .unwrap();
    assert_eq!(cs.namespace(), Some("ns-1"));
    assert_eq!(cs.key_name, "router");
    assert_eq!(cs.key, "c2VjcmV0=", "a key may itself contain `=`");
    assert_eq!(cs.entity_path.as_deref(), Some("events"));
    assert!(!format!("{cs:?}").contains("c2VjcmV0"));
    assert_eq!(
        ConnectionString::parse("SharedAccessKeyName=k;SharedAccessKey=v"),
        Err("has no `Endpoint=`")
    );
    assert_eq!(
        ConnectionString::parse("Endpoint=https://x/;SharedAccessKeyName=k;SharedAccessKey=v"),
        Err("`Endpoint` must be an sb:// URL")
    );
    assert!(ConnectionString::parse("garbage").is_err());
}

#[test]
fn cluster_settings_are_checked_and_name_their_key() {
    let c = parse("sources:\n  - type: http_ingest\n").unwrap();
    assert_eq!(
        (c.cluster.api_requests_per_second, c.cluster.api_burst),
        (200, 300)
    );
    assert!(!c.cluster.force_after_deadline);
    for (text, key) in [
        ("cluster:\n  api_burst: 0\n", "`cluster.api_burst`"),
        (
            "cluster:\n  drain_timeout_seconds: 0\n",
            "`cluster.drain_timeout_seconds`",
        ),
        ("cluster:\n  pool_labels: ['']\n", "`cluster.pool_labels`"),
        (
            "cluster:\n  leader_election:\n    lease_name: ''\n",
            "`cluster.leader_election.lease_name`",
        ),
        (
            "cluster:\n  make_before_break:\n    max_pool_share: 1.5\n",
            "`cluster.make_before_break.max_pool_share`",
        ),
        (
            "cluster:\n  make_before_break:\n    timeout_seconds: 0\n",
            "`cluster.make_before_break.timeout_seconds`",
        ),
        (
            "cluster:\n  shelter:\n    window_seconds: 0\n",
            "`cluster.shelter.window_seconds`",
        ),
        (
            "cluster:\n  failback:\n    windows: ['9-10']\n",
            "`cluster.failback.windows`",
        ),
        (
            "cluster:\n  failback:\n    enabled: true\n  make_before_break:\n    kinds: []\n",
            "`cluster.failback.enabled`",
        ),
        ("cluster:\n  karpenter: sometimes\n", "`cluster.karpenter`"),
        (
            "cluster:\n  asg_lifecycle:\n    heartbeat_interval_seconds: 7201\n",
            "`cluster.asg_lifecycle.heartbeat_interval_seconds`",
        ),
        (
            "cluster:\n  asg_lifecycle:\n    complete: maybe\n",
            "`cluster.asg_lifecycle.complete`",
        ),
        (
            "cluster:\n  pool_stats:\n    interval_seconds: 0\n",
            "`cluster.pool_stats.interval_seconds`",
        ),
        (
            "cluster:\n  pool_stats:\n    config_map: ''\n",
            "`cluster.pool_stats.config_map`",
        ),
        (
            "cluster:\n  pool_stats:\n    every: 5\n",
            "`cluster.pool_stats.every`",
        ),
    ] {
        let err = parse(&format!("sources:\n  - type: http_ingest\n{text}")).unwrap_err();
        assert!(err.to_string().starts_with(key), "{text}: {err}");
    }
    // No rate is no limit, and then no burst is needed.
    let c = parse(
        "sources:\n  - type: http_ingest\ncluster:\n  api_requests_per_second: 0\n  api_burst: 0\n",
    )
    .unwrap();
    assert_eq!(c.cluster.api_requests_per_second, 0);
    let err = parse("sources:\n  - type: http_ingest\ncluster:\n  api_burts: 3\n").unwrap_err();
    assert!(err.to_string().contains("api_burts"), "{err}");
}

#[test]
fn server_bounds_are_checked_and_name_their_key() {
    let c = parse("sources:\n  - type: http_ingest\n").unwrap();
    assert_eq!(
        (
            c.server.max_connections,
            c.server.header_read_timeout_seconds,
            c.server.body_read_timeout_seconds,
            c.server.idle_timeout_seconds
        ),
        (512, 10, 30, 60)
    );
    for (text, key) in [
        (
            "server:\n  max_connections: 0\n",
            "`server.max_connections`",
        ),
        (
            "server:\n  header_read_timeout_seconds: 0\n",
            "`server.header_read_timeout_seconds`",
        ),
        (
            "server:\n  body_read_timeout_seconds: 99999\n",
            "`server.body_read_timeout_seconds`",
        ),
        (
            "server:\n  idle_timeout_seconds: 0\n",
            "`server.idle_timeout_seconds`",
        ),
    ] {
        let err = parse(&format!("sources:\n  - type: http_ingest\n{text}")).unwrap_err();
        assert!(err.to_string().starts_with(key), "{text}: {err}");
    }
}

#[test]
fn ingest_beyond_loopback_needs_a_token_of_16_characters_or_more() {
    let open = parse("sources:\n  - type: http_ingest\nserver:\n  listen: 0.0.0.0:8080\n").unwrap();
    let err = open.check_exposure().unwrap_err();
    assert!(err.to_string().starts_with("`sources[0].token`"), "{err}");
    let local =
        parse("sources:\n  - type: http_ingest\nserver:\n  listen: 127.0.0.1:8080\n").unwrap();
    assert!(local.check_exposure().is_ok());
    let local6 =
        parse("sources:\n  - type: http_ingest\nserver:\n  listen: '[::1]:8080'\n").unwrap();
    assert!(local6.check_exposure().is_ok());
    let with_token = Config::parse(
        "sources:\n  - type: http_ingest\n    token: ${T}\nserver:\n  listen: 0.0.0.0:8080\n",
        env(&[("T", "0123456789abcdef")]),
    )
    .unwrap();
    assert!(with_token.check_exposure().is_ok());
    assert!(
        !format!("{with_token:?}").contains("0123456789abcdef"),
        "the token is not printed"
    );
    let err = parse("sources:\n  - type: http_ingest\n    token: short\n").unwrap_err();
    assert!(err.to_string().starts_with("`sources[0].token`"), "{err}");
    let err = parse("sources:\n  - type: http_ingest\n    token: 'has a space in it, sadly'\n")
        .unwrap_err();
    assert!(err.to_string().starts_with("`sources[0].token`"), "{err}");
}
