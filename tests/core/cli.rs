//! The CLI contract acceptance checks rely on: `normalize` exits 0 with JSON lines, 3 when the
//! input yields no event, 2 when it is malformed (never a panic), 1 when it cannot be read.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_eviction-router");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    {
        let mut pipe = child.stdin.take().unwrap();
        if let Some(bytes) = stdin {
            // The binary stops reading past the size limit; a broken pipe then is expected.
            let _ = pipe.write_all(bytes);
        }
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_no_panic(out: &Output) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "the binary panicked: {err}");
}

#[test]
fn normalize_prints_one_json_line_per_event_and_exits_0() {
    let out = run(
        &[
            "normalize",
            "--provider",
            "aws",
            "tests/fixtures/aws/spot-interruption-warning.json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1);
    let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(event["type"], "eviction-router.interruption.v1");
    assert_eq!(event["data"]["deadline"], "1970-01-01T00:02:00Z");

    let out = run(
        &[
            "normalize",
            "-p",
            "azure",
            "tests/fixtures/azure/scheduled-event-emitted.eventgrid.json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        2,
        "one event per VM"
    );
}

#[test]
fn normalize_reads_stdin() {
    let body = std::fs::read(root().join("tests/fixtures/gcp/preempted.pubsub-push.json")).unwrap();
    let out = run(&["normalize", "--provider", "gcp", "-"], Some(&body));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let event: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        event["data"]["instance"]["provider_id"],
        "gce://mock-project/europe-west1-c/mock-instance-spot-3706-5b909138-nr65"
    );
}

#[test]
fn normalize_exits_3_with_the_reason_when_nothing_is_actionable() {
    let out = run(
        &[
            "normalize",
            "--provider",
            "aws",
            "tests/fixtures/aws/state-change-pending.json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("not_actionable") && stderr(&out).contains("pending"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn normalize_exits_2_on_every_kind_of_malformed_input() {
    let depth = 50_000;
    let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let mut huge = br#"{"id":""#.to_vec();
    huge.resize(3 * 1024 * 1024, b'a');
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "empty"),
        ("truncated", br#"{"version":"0","id":"1e5527d7","detail-type":"EC2 Spot"#.to_vec(), "not valid JSON"),
        ("wrong types", br#"{"id":1,"source":["aws.ec2"],"detail-type":true}"#.to_vec(), "expected shape"),
        ("missing field", br#"{"id":"x","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","time":"2026-01-01T00:00:00Z","detail":{}}"#.to_vec(), "detail.instance-id"),
        ("bad time", br#"{"id":"x","source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","time":"yesterday","detail":{"instance-id":"i-1"}}"#.to_vec(), "yesterday"),
        ("deeply nested", deep.into_bytes(), "message body"),
        ("deeply nested inside", format!(r#"{{"id":"x","detail":{}}}"#, "[".repeat(depth)).into_bytes(), "not valid JSON"),
        ("invalid utf-8", b"{\"id\":\"\xff\xfe\"}".to_vec(), "not valid JSON"),
        ("not an object", b"42".to_vec(), "expected shape"),
        ("huge", huge, "limit"),
    ];
    for (what, body, needle) in cases {
        for provider in ["aws", "azure", "gcp"] {
            let out = run(&["normalize", "--provider", provider, "-"], Some(&body));
            assert_no_panic(&out);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{what} ({provider}): {}",
                stderr(&out)
            );
            assert!(
                out.stdout.is_empty(),
                "{what} ({provider}) printed something"
            );
            if provider == "aws" {
                assert!(
                    stderr(&out).contains(needle),
                    "{what}: stderr lacks `{needle}`: {}",
                    stderr(&out)
                );
            }
        }
    }
}

#[test]
fn normalize_exits_1_when_the_file_cannot_be_read() {
    let out = run(
        &["normalize", "--provider", "aws", "no/such/file.json"],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no/such/file.json"));
}

#[test]
fn bad_provider_is_a_usage_error_that_lists_the_choices() {
    let out = run(&["normalize", "--provider", "oracle", "-"], Some(b"{}"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("aws, azure, gcp"), "{}", stderr(&out));
}

#[test]
fn replay_prints_the_stream_and_a_summary_per_kind() {
    let out = run(&["replay", "examples/events"], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let providers: std::collections::BTreeSet<String> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["data"]["provider"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(providers.len(), 3, "samples of all three clouds");
    let err = stderr(&out);
    let summary = err
        .lines()
        .find(|l| l.starts_with("replayed "))
        .expect("a summary line");
    assert!(
        summary.contains(&format!("{} events", stdout.lines().count())),
        "{summary}"
    );
    for kind in [
        "interruption",
        "rebalance_recommendation",
        "scheduled_maintenance",
        "termination",
    ] {
        assert!(
            err.lines().any(|l| l.trim_start().starts_with(kind)),
            "no summary line for {kind}: {err}"
        );
    }
}

#[test]
fn replay_reports_malformed_files_and_exits_2() {
    let dir = std::env::temp_dir().join(format!("er-replay-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("aws")).unwrap();
    std::fs::write(dir.join("aws/bad.json"), b"{not json").unwrap();
    std::fs::copy(
        root().join("tests/fixtures/aws/rebalance-recommendation.json"),
        dir.join("aws/good.json"),
    )
    .unwrap();
    let out = run(&["replay", dir.to_str().unwrap()], None);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stdout.clone())
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert!(
        stderr(&out).contains("bad.json") && stderr(&out).contains("1 malformed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn version_and_help_work() {
    let out = run(&["--version"], None);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .starts_with("eviction-router ")
    );
    let out = run(&["normalize", "--help"], None);
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("Exit codes") && help.contains("--provider"),
        "{help}"
    );
}
