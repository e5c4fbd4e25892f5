//! `run` and `check-config`.

use std::path::Path;

use super::{EXIT_CONFIG, EXIT_IO, EXIT_OK};
use crate::config::Config;
use crate::{service, telemetry};

fn load(path: Option<&Path>) -> Result<Config, u8> {
    let loaded = match path {
        Some(p) => Config::load(p),
        None => Config::embedded_default(),
    };
    loaded.map_err(|e| {
        let name = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "the embedded default".into());
        eprintln!("error: invalid configuration in {name}: {e}");
        EXIT_CONFIG
    })
}

fn exposed(config: &Config, name: &str) -> Result<(), u8> {
    config.check_exposure().map_err(|e| {
        eprintln!("error: invalid configuration in {name}: {e}");
        EXIT_CONFIG
    })
}

pub(super) fn check_config(path: &Path) -> u8 {
    match load(Some(path)).and_then(|c| exposed(&c, &path.display().to_string()).map(|()| c)) {
        Ok(config) => {
            let sources: Vec<_> = config.sources.iter().map(|s| s.type_name()).collect();
            println!(
                "{}: valid ({} source(s): {})",
                path.display(),
                sources.len(),
                sources.join(", ")
            );
            EXIT_OK
        }
        Err(code) => code,
    }
}

pub(super) fn run(path: Option<&Path>, listen: Option<std::net::SocketAddr>) -> u8 {
    let mut config = match load(path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    let name = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the embedded default".into());
    if let Err(code) = exposed(&config, &name) {
        return code;
    }
    telemetry::init(config.log.format, "info");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_IO;
        }
    };
    let code = runtime.block_on(async {
        let shutdown = service::shutdown_on_signals();
        match service::run(config, shutdown).await {
            Ok(()) => EXIT_OK,
            Err(e) => {
                tracing::error!(error = %e, "eviction-router could not start.");
                eprintln!("error: {e}");
                EXIT_IO
            }
        }
    });
    // Dropping a runtime waits for its blocking tasks (a write to a stdout nobody reads, a DNS
    // lookup) without limit (tokio's `Runtime` drop); the service is done, so wait a moment only.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
