//! `fake-apiserver`: serves the fake Kubernetes API over plain HTTP on 127.0.0.1.
//!
//! ```text
//! fake-apiserver [--listen 127.0.0.1:PORT] [--seed FILE] [--kubeconfig PATH] [--watch-retention N]
//!                [--rbac FILE... --as USER]
//! ```
//! The first line on stdout is the bound address (`127.0.0.1:PORT`); the kubeconfig, if asked
//! for, is written before that line. The server runs until interrupted. With `--rbac`, every
//! request is authorized as `USER` against the RBAC objects of the files (see `Rbac`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use fake_apiserver::{FakeApiServer, Rbac, kubeconfig};

const USAGE: &str = "usage: fake-apiserver [--listen 127.0.0.1:PORT] [--seed FILE] \
[--kubeconfig PATH] [--watch-retention N] [--rbac FILE... --as USER]

  --listen ADDR          127.0.0.1:PORT to serve on; port 0 picks one (default 127.0.0.1:0)
  --seed FILE            JSON or YAML: a List of objects, a single object, or YAML documents
  --kubeconfig PATH      write a kubeconfig for the server (plain HTTP, no credentials)
  --watch-retention N    changes kept for watches (default 1000)
  --rbac FILE            YAML or JSON manifests whose ClusterRoles, ClusterRoleBindings, Roles
                         and RoleBindings authorize every request (repeatable; needs --as)
  --as USER              the user every request is, e.g.
                         system:serviceaccount:eviction-router:eviction-router";

#[derive(Debug)]
struct Args {
    listen: SocketAddr,
    seed: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
    retention: Option<usize>,
    rbac: Vec<PathBuf>,
    user: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        seed: None,
        kubeconfig: None,
        retention: None,
        rbac: Vec::new(),
        user: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (flag, None),
        };
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let value = inline
            .or_else(|| it.next())
            .ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => {
                args.listen = value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?;
                if args.listen.ip() != std::net::Ipv4Addr::LOCALHOST {
                    return Err(format!("--listen {value}: only 127.0.0.1 is served"));
                }
            }
            "--seed" => args.seed = Some(value.into()),
            "--kubeconfig" => args.kubeconfig = Some(value.into()),
            "--rbac" => args.rbac.push(value.into()),
            "--as" => args.user = Some(value),
            "--watch-retention" => {
                args.retention = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--watch-retention: {e}"))?,
                )
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.rbac.is_empty() != args.user.is_none() {
        return Err("--rbac and --as go together".into());
    }
    Ok(args)
}

/// Reads seed objects: JSON (a List or one object) or YAML (documents, each a List or object).
fn load_seed(fake: &FakeApiServer, path: &PathBuf) -> Result<usize, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let docs: Vec<serde_json::Value> = match serde_json::from_str(&text) {
        Ok(doc) => vec![doc],
        Err(_) => {
            let mut docs = Vec::new();
            for doc in serde_norway::Deserializer::from_str(&text) {
                let value: serde_json::Value = serde::Deserialize::deserialize(doc)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                if !value.is_null() {
                    docs.push(value);
                }
            }
            docs
        }
    };
    let mut count = 0;
    for doc in docs {
        count += fake
            .insert_all(doc)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
    }
    Ok(count)
}

/// The RBAC policy of the `--rbac` files for the `--as` user.
fn load_rbac(files: &[PathBuf], user: &str) -> Result<Rbac, String> {
    let mut rbac = Rbac::new(user);
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        rbac.add_manifests(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(rbac)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("fake-apiserver: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = FakeApiServer::new();
    if let Some(retention) = args.retention {
        fake.faults().set_watch_retention(retention);
    }
    if let Some(seed) = &args.seed {
        match load_seed(&fake, seed) {
            Ok(n) => eprintln!("fake-apiserver: seeded {n} objects"),
            Err(e) => {
                eprintln!("fake-apiserver: seed: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(user) = &args.user {
        match load_rbac(&args.rbac, user) {
            Ok(rbac) => fake.enforce_rbac(rbac),
            Err(e) => {
                eprintln!("fake-apiserver: rbac: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let addr = match fake.serve_http(args.listen.port()).await {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("fake-apiserver: listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.kubeconfig
        && let Err(e) = std::fs::write(path, kubeconfig(addr))
    {
        eprintln!("fake-apiserver: writing {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("{addr}");
    let _ = std::io::stdout().flush();
    shutdown_signal().await;
    ExitCode::SUCCESS
}
