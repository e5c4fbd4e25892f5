//! `report` over a generated stream: the release binary on `BENCH_EVENTS` events (default
//! 1,000,000) of twelve pools on three clouds (`tests/core/report_stream.rs`,
//! `Scenario::bench`), as the table and with `--html`. Target: ≤ 2 s and ≤ 100 MiB RSS on the
//! 2-core machine of docs/BENCHMARKS.md.
//!
//! Each shape runs `BENCH_RUNS` times (default 5) after one unmeasured run; wall time, peak
//! RSS and CPU time come from `/usr/bin/time -f '%e %M %U %S'` (GNU time), or, without it,
//! from the clock and the child's `VmHWM` in `/proc` read until it exits. CPU time is printed
//! because the machine is shared: it moves less than wall time when other builds run. The stream is generated
//! once into cargo's target tmpdir and reused while its size matches.
//!
//! Run: `cargo bench --bench report` (`BENCH_EVENTS=200000 BENCH_RUNS=3 cargo bench --bench
//! report` for a quick look).

#[path = "../tests/core/report_stream.rs"]
mod report_stream;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use report_stream::Scenario;

const BIN: &str = env!("CARGO_BIN_EXE_eviction-router");

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The stream of `events` events, generated unless already there.
fn stream(events: usize) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("report-stream-{events}.jsonl"));
    let lines = |p: &Path| {
        std::fs::read(p)
            .map(|b| b.iter().filter(|c| **c == b'\n').count())
            .unwrap_or(0)
    };
    if path.is_file() && lines(&path) == events {
        return path;
    }
    let started = Instant::now();
    let file = BufWriter::new(File::create(&path).expect("the stream file can be made"));
    let n = report_stream::write(&Scenario::bench(events), file).expect("the stream is written");
    assert_eq!(
        n, events,
        "the scenario ran out of time before {events} events"
    );
    println!(
        "generated {n} events ({:.0} MiB) in {:.1} s: {}",
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0,
        started.elapsed().as_secs_f64(),
        path.display()
    );
    path
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One run: (wall seconds, peak RSS MiB, CPU seconds (user + system; NaN without GNU time)).
fn run(args: &[&str]) -> (f64, f64, f64) {
    let gnu_time = Path::new("/usr/bin/time");
    if gnu_time.is_file() {
        let out = Command::new(gnu_time)
            .args(["-f", "%e %M %U %S", BIN])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("the report runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "report failed: {err}");
        let last = err.lines().last().unwrap_or_default();
        let mut parts = last.split_whitespace();
        let mut field = |what: &str| -> f64 {
            parts
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {what} in `{last}`"))
        };
        let wall = field("elapsed");
        let kib = field("max RSS");
        let cpu = field("user") + field("system");
        return (wall, kib / 1024.0, cpu);
    }
    let started = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .expect("the report runs");
    let mut peak = 0;
    loop {
        if let Some(kib) = peak_rss_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "report failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (
        started.elapsed().as_secs_f64(),
        peak as f64 / 1024.0,
        f64::NAN,
    )
}

/// `median (min–max)`.
fn summary(mut v: Vec<f64>, decimals: usize) -> String {
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    format!(
        "{median:.decimals$} ({:.decimals$}–{:.decimals$})",
        v[0],
        v[v.len() - 1]
    )
}

fn main() {
    let has_report = Command::new(BIN)
        .args(["report", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        has_report,
        "{BIN} has no `report` command (built from another tree?)"
    );
    let events = env_usize("BENCH_EVENTS", 1_000_000);
    let runs = env_usize("BENCH_RUNS", 5).max(1);
    let path = stream(events);
    let input = path.to_str().expect("a UTF-8 path");
    let html = std::env::temp_dir().join(format!("report-bench-{}.html", std::process::id()));
    let html_arg = html.to_str().expect("a UTF-8 path");
    let shapes: [(&str, Vec<&str>); 2] = [
        ("table", vec!["report", input]),
        ("table + --html", vec!["report", "--html", html_arg, input]),
    ];
    println!("report over {events} events, {runs} runs each: median (min–max)");
    println!(
        "| shape | wall time, s | peak RSS, MiB | CPU time (user + sys), s | events/s (median) |"
    );
    println!("|---|---|---|---|---|");
    for (name, args) in shapes {
        // One unmeasured run warms the page cache.
        run(&args);
        let (mut walls, mut rss, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let (w, r, c) = run(&args);
            walls.push(w);
            rss.push(r);
            cpu.push(c);
        }
        let mut sorted = walls.clone();
        sorted.sort_by(f64::total_cmp);
        let rate = events as f64 / sorted[sorted.len() / 2].max(1e-9);
        println!(
            "| {name} | {} | {} | {} | {:.0} |",
            summary(walls, 2),
            summary(rss, 1),
            summary(cpu, 2),
            rate
        );
    }
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average after the runs: {}", load.trim());
    }
    let _ = std::fs::remove_file(html);
}
