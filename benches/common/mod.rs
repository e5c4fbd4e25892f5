//! What the latency harnesses share: the router process with its stdout and its per-message
//! `took_ms`, and the measurement of one run.

#![allow(dead_code)] // Each harness uses its own part.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_eviction-router");

/// A child process killed on drop.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("an address")
        .port()
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The release router running `config`: its stdout lines with their arrival time, and the
/// router-added latency (ms) of every settled message, as it logs them.
pub struct Router {
    _process: Kill,
    lines: mpsc::Receiver<(Instant, String)>,
    settled: mpsc::Receiver<f64>,
}

impl Router {
    pub fn start(config: &Path, env: &[(&str, String)]) -> Router {
        let mut router = Command::new(BIN)
            .args(["run", "--config", config.to_str().expect("utf-8 path")])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "warn,eviction_router::metrics=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the router starts");
        let (out_tx, lines) = mpsc::channel();
        let stdout = router.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = out_tx.send((Instant::now(), line));
            }
        });
        let (err_tx, settled) = mpsc::channel();
        let stderr = router.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "Settled a message."
                    && let Some(ms) = v["took_ms"].as_f64()
                {
                    let _ = err_tx.send(ms);
                }
            }
        });
        Router {
            _process: Kill(router),
            lines,
            settled,
        }
    }

    /// Waits (at most 120 s) for the event of every id in `sent` (id → when it was sent) and
    /// returns the sorted end-to-end and router-added latencies in ms, and when the last event
    /// came out.
    pub fn measure(&self, sent: &HashMap<String, Instant>) -> (Vec<f64>, Vec<f64>, Instant) {
        let mut e2e = Vec::with_capacity(sent.len());
        let deadline = Instant::now() + Duration::from_secs(120);
        while e2e.len() < sent.len() && Instant::now() < deadline {
            if let Ok((at, line)) = self.lines.recv_timeout(Duration::from_secs(1)) {
                let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
                if let Some(t) = v["id"].as_str().and_then(|id| sent.get(id)) {
                    e2e.push(at.duration_since(*t).as_secs_f64() * 1e3);
                }
            }
        }
        let done = Instant::now();
        // The last messages' log lines follow their events.
        std::thread::sleep(Duration::from_millis(500));
        let mut added: Vec<f64> = self.settled.try_iter().collect();
        assert_eq!(
            e2e.len(),
            sent.len(),
            "not every event came out within 120 s"
        );
        e2e.sort_by(f64::total_cmp);
        added.sort_by(f64::total_cmp);
        (e2e, added, done)
    }
}

/// `p50 / p99` of router-added and end-to-end latencies, as the tables print them.
pub fn row(added: &[f64], e2e: &[f64]) -> String {
    format!(
        "{:.2} / {:.2} | {:.1} / {:.1}",
        percentile(added, 0.5),
        percentile(added, 0.99),
        percentile(e2e, 0.5),
        percentile(e2e, 0.99)
    )
}
