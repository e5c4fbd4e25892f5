//! `report`: the statistics of a recorded stream against golden files, its CLI contract (exit
//! codes, stdin), and its HTML page in headless Chromium.
//!
//! `tests/fixtures/report/pools.jsonl` is the output of [`report_stream`] for
//! `Scenario::fixture()`; `UPDATE_GOLDEN=1 cargo test --test core report` rewrites it and the
//! golden files under `tests/golden/report/`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::report_stream::{self, Scenario};

const BIN: &str = env!("CARGO_BIN_EXE_eviction-router");
const STREAM: &str = "tests/fixtures/report/pools.jsonl";
const PUBLISHED: &str = "tests/fixtures/report/published.csv";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn update() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
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
            pipe.write_all(bytes).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("er-report-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compares `actual` with the golden file, or rewrites it under `UPDATE_GOLDEN`.
fn golden(path: &str, actual: &str) {
    let file = root().join(path);
    if update() {
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{path}: {e} (rerun with UPDATE_GOLDEN=1 to create it)"));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or(expected.lines().count().min(actual.lines().count()), |i| i);
        panic!(
            "{path} differs from the output, first at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             (rerun with UPDATE_GOLDEN=1 to accept)",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

/// The recorded stream's path, rewritten first (once) under `UPDATE_GOLDEN`, so that the
/// golden files made in the same run are made from the new stream.
fn stream() -> &'static str {
    static WRITE: std::sync::Once = std::sync::Once::new();
    if update() {
        WRITE.call_once(|| golden(STREAM, &generated()));
    }
    STREAM
}

fn generated() -> String {
    let mut bytes = Vec::new();
    let n = report_stream::write(&Scenario::fixture(), &mut bytes).unwrap();
    assert!(n >= 500, "only {n} events");
    String::from_utf8(bytes).unwrap()
}

#[test]
fn report_the_recorded_stream_is_what_the_generator_writes() {
    golden(stream(), &generated());
}

#[test]
fn report_the_recorded_stream_has_what_the_statistics_need() {
    let text = std::fs::read_to_string(root().join(stream())).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.len() >= 500, "{} events", events.len());
    let kinds = |kind: &str| events.iter().filter(|e| e["data"]["kind"] == kind).count();
    for kind in [
        "interruption",
        "rebalance_recommendation",
        "replacement_ready",
        "pool_at_risk",
        "pool_stats",
    ] {
        assert!(kinds(kind) > 0, "no {kind} in the stream");
    }
    let out = run(&["report", "--json", stream()], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let pools = report["pools"].as_array().unwrap();
    let named = pools.iter().filter(|p| p["pool"] != "(unknown)").count();
    assert!(named >= 3, "{named} pools");
    let providers: std::collections::BTreeSet<&str> = report["capacity"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["provider"].as_str())
        .collect();
    assert_eq!(providers.len(), 3, "{providers:?}");
    let total = &report["total"];
    assert!(
        total["interruptions_in_bursts"].as_u64().unwrap() >= 10,
        "bursts: {total}"
    );
    assert!(
        total["rebalance"]["followed"].as_u64().unwrap() >= 5,
        "pairs: {total}"
    );
    assert!(
        total["rebalance"]["not_followed"].as_u64().unwrap() >= 2,
        "false alarms: {total}"
    );
    assert!(
        report["events"]["repeat_notices"].as_u64().unwrap() >= 3,
        "Azure's second notices"
    );
    assert!(
        pools.iter().any(|p| p["pool"] == "(unknown)"),
        "an older router's notices"
    );
    for p in pools.iter().filter(|p| p["pool"] != "(unknown)") {
        assert!(p["node_hours"].as_f64().unwrap() > 100.0, "{}", p["pool"]);
        assert!(
            p["lifetime_seconds"]["count"].as_u64().unwrap() > 5,
            "{}",
            p["pool"]
        );
    }
}

/// The stream is the router's format: every event but `pool_stats` (not yet in the schema:
/// the cluster side adds the kind) validates against `docs/schema/event.v1.json`.
#[test]
fn report_the_recorded_stream_validates_against_the_event_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/schema/event.v1.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let text = std::fs::read_to_string(root().join(stream())).unwrap();
    let mut checked = 0;
    for (i, line) in text.lines().enumerate() {
        let event: Value = serde_json::from_str(line).unwrap();
        if event["data"]["kind"] == "pool_stats" {
            continue;
        }
        let errors: Vec<String> = validator
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "line {}: {}", i + 1, errors.join("; "));
        let back: eviction_router::event::Event = serde_json::from_value(event).unwrap();
        assert_eq!(
            back.to_json_line(),
            line,
            "line {} is not as the router writes it",
            i + 1
        );
        checked += 1;
    }
    assert!(checked >= 300, "{checked}");
}

#[test]
fn report_json_matches_its_golden_file() {
    let out = run(
        &["report", "--json", "--published", PUBLISHED, stream()],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    golden(
        "tests/golden/report/pools.json",
        &String::from_utf8(out.stdout).unwrap(),
    );
}

#[test]
fn report_table_matches_its_golden_file() {
    let out = run(&["report", "--published", PUBLISHED, stream()], None);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    golden(
        "tests/golden/report/pools.txt",
        &String::from_utf8(out.stdout).unwrap(),
    );
}

#[test]
fn report_reads_stdin_as_it_reads_a_file() {
    let body = std::fs::read(root().join(stream())).unwrap();
    let from_stdin = run(&["report", "-"], Some(&body));
    let from_file = run(&["report", stream()], None);
    assert_eq!(from_stdin.status.code(), Some(0), "{}", stderr(&from_stdin));
    assert_eq!(from_stdin.stdout, from_file.stdout);
    let default_is_stdin = run(&["report"], Some(&body));
    assert_eq!(default_is_stdin.stdout, from_file.stdout);
}

#[test]
fn report_exit_codes_follow_the_contract() {
    // Nothing to report: 3.
    let out = run(&["report", "-"], Some(b""));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("no events"), "{}", stderr(&out));
    let out = run(&["report", "-"], Some(b"\n\n{\"data\":{\"kind\":\"future\",\"instance\":{\"id\":\"x\"},\"occurred_at\":\"2026-01-01T00:00:00Z\"}}\n"));
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // Malformed lines: 2, named, and the rest still reported.
    let body = std::fs::read_to_string(root().join(stream())).unwrap();
    let mut lines: Vec<&str> = body.lines().take(50).collect();
    lines.insert(1, "{not json");
    lines.insert(
        3,
        r#"{"data":{"kind":"interruption","instance":{"id":"i"},"occurred_at":"soon"}}"#,
    );
    let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(2 * 1024 * 1024));
    lines.insert(5, &huge);
    let out = run(&["report", "-"], Some((lines.join("\n") + "\n").as_bytes()));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("malformed: line 2: not a normalised event"),
        "{err}"
    );
    assert!(
        err.contains("malformed: line 4:") && err.contains("soon"),
        "{err}"
    );
    assert!(err.contains("malformed: line 6: longer than"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("spot-general")
    );

    // Unreadable input or published rates: 1; malformed published rates: 2, nothing printed.
    let out = run(&["report", "no/such/stream.jsonl"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no/such/stream.jsonl"),
        "{}",
        stderr(&out)
    );
    let out = run(
        &["report", "--published", "no/such/rates.csv", stream()],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let dir = scratch("published");
    let bad = dir.join("rates.csv");
    std::fs::write(
        &bad,
        "provider,instance_type,location,interruption_rate\naws,m5.large,us-east-1,often\n",
    )
    .unwrap();
    let out = run(
        &["report", "--published", bad.to_str().unwrap(), stream()],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("line 2") && stderr(&out).contains("often"),
        "{}",
        stderr(&out)
    );
    // An HTML page that cannot be written: 1.
    let out = run(
        &["report", "--html", "no/such/dir/pools.html", stream()],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    std::fs::remove_dir_all(dir).unwrap();

    let out = run(&["report", "--help"], None);
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("Exit codes") && help.contains("--html") && help.contains("--published"),
        "{help}"
    );
}

/// Writes the page for the recorded stream; returns its path.
fn html_page(dir: &Path) -> PathBuf {
    let page = dir.join("pools.html");
    let out = run(
        &[
            "report",
            "--published",
            PUBLISHED,
            "--html",
            page.to_str().unwrap(),
            stream(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    page
}

#[test]
fn report_html_is_self_contained() {
    let dir = scratch("self-contained");
    let html = std::fs::read_to_string(html_page(&dir)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    for fetching in [
        "src=",
        "href=",
        "<link",
        "url(",
        "@import",
        "http://",
        "https://",
        "fetch(",
        "XMLHttpRequest",
    ] {
        assert!(
            !html.contains(fetching),
            "the page would fetch something: `{fetching}`"
        );
    }
    for chart in [
        "Interruptions over time",
        "Lifetime before the notice",
        "Recovery latency by phase",
        "Observed vs published",
    ] {
        assert!(html.contains(chart), "no `{chart}`");
    }
    assert!(html.matches("<svg").count() >= 6, "too few charts");
    assert!(html.contains("spot-batch") && html.contains("gke-spot"));
    // The same stream gives the same page.
    let dir = scratch("again");
    let again = std::fs::read_to_string(html_page(&dir)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(html, again);
}

// --- headless Chromium --------------------------------------------------------------------------

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The browser: `CHROMIUM` if set, else `chromium` (Debian's package) or `chromium-browser`.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    on_path("chromium").or_else(|| on_path("chromium-browser"))
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Runs the browser to completion within `limit`, killing it past that.
fn browse(mut cmd: Command, limit: Duration) -> Output {
    let mut child: Child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

fn headless(browser: &Path, profile: &Path) -> Command {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless=new",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--disable-extensions",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        // Any attempt to reach the network fails (and would be logged): the page must not try.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// Pixel counts of a PNG, decoded by Python's zlib (no image crate here): every pixel that
/// is not the page's background or white, and those of each colour asked for.
fn pixel_counts(png: &Path, colours: &[&str]) -> Value {
    const DECODE: &str = r##"
import json, struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, width = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = width * bpp
rows, prev, i = [], bytearray(stride), 0
for _ in range(height):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(bytes(line))
    prev = line
wanted = {bytes.fromhex(c.lstrip("#")): c for c in sys.argv[2:]}
counts = {c: 0 for c in sys.argv[2:]}
background = {bytes.fromhex("f4f5f7"), bytes.fromhex("ffffff")}
ink = 0
for line in rows:
    for x in range(0, stride, bpp):
        px = line[x:x + 3]
        if px not in background:
            ink += 1
        if px in wanted:
            counts[wanted[px]] += 1
print(json.dumps({"width": width, "height": height, "ink": ink, "colours": counts}))
"##;
    let out = Command::new("python3")
        .arg("-c")
        .arg(DECODE)
        .arg(png)
        .args(colours)
        .output()
        .expect("python3 runs (scripts/test installs it)");
    assert!(
        out.status.success(),
        "decoding the screenshot: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The page opens in headless Chromium without a console message (the page writes none, so
/// any is an error: an exception, a failed load), its script runs to the end, and a
/// screenshot shows the charts in the pools' colours.
///
/// Skipped, loudly, when Chromium is missing and `CI` is not set; with `CI` set a missing
/// Chromium fails. `scripts/test` installs Debian's `chromium`.
#[test]
fn report_html_renders_in_headless_chromium() {
    let Some(browser) = chromium() else {
        let msg = "chromium is not installed: the HTML report's browser check needs it \
                   (Debian package `chromium`; `scripts/test` installs it, or set CHROMIUM)";
        if in_ci() {
            panic!("{msg}");
        }
        eprintln!("\n*** SKIPPED report_html_renders_in_headless_chromium: {msg} ***\n");
        return;
    };
    let dir = scratch("chromium");
    let page = html_page(&dir);
    let url = format!("file://{}", page.display());

    let mut cmd = headless(&browser, &dir.join("profile-dom"));
    cmd.arg("--dump-dom").arg(&url);
    let out = browse(cmd, Duration::from_secs(90));
    let log = stderr(&out);
    assert!(out.status.success(), "chromium --dump-dom failed: {log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(
        console.is_empty(),
        "the page wrote to the console:\n{}",
        console.join("\n")
    );
    let dom = String::from_utf8(out.stdout).unwrap();
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page's script did not run to its end"
    );
    assert!(
        dom.matches("<svg").count() >= 6,
        "the charts are not in the DOM"
    );

    let shot = dir.join("pools.png");
    let mut cmd = headless(&browser, &dir.join("profile-shot"));
    cmd.arg("--window-size=1200,2400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url);
    let out = browse(cmd, Duration::from_secs(90));
    assert!(
        out.status.success() && shot.is_file(),
        "no screenshot: {}",
        stderr(&out)
    );
    // The four busiest pools' colours (the Okabe–Ito palette's first four).
    let colours = ["#0072b2", "#e69f00", "#009e73", "#cc79a7"];
    let counts = pixel_counts(&shot, &colours);
    let (w, h) = (
        counts["width"].as_u64().unwrap(),
        counts["height"].as_u64().unwrap(),
    );
    assert_eq!((w, h), (1200, 2400), "{counts}");
    let ink = counts["ink"].as_u64().unwrap();
    assert!(ink > w * h / 50, "the screenshot is nearly blank: {counts}");
    for colour in colours {
        let n = counts["colours"][colour].as_u64().unwrap();
        // Legend swatches alone are 144 pixels; the bars are far more.
        assert!(
            n > 1_500,
            "too little of {colour} on the screenshot (charts missing?): {counts}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
