//! `tail`: the fleet's event stream from NATS, one structured CloudEvent JSON line per event,
//! whatever mode the routers publish in (binary-mode messages are put back together from their
//! `ce-` headers and body, [`crate::sinks::nats::decode`]).

use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;

use async_nats::jetstream;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::{EXIT_IO, EXIT_OK};
use crate::sinks::nats::{decode, escape_token};

/// `eviction-router tail`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    eviction-router tail --nats nats://nats.example:4222\n  \
    eviction-router tail --nats nats://nats.example:4222 --cluster prod-eu-1 --from-start\n  \
    eviction-router tail --nats tls://nats.example:4222 --creds router.creds --subject 'eviction-router.*.aws.interruption'")]
pub struct TailArgs {
    /// NATS server URL, or several separated by commas.
    #[arg(long, env = "NATS_URL")]
    pub nats: String,
    /// The subject to follow (wildcards allowed). Default: every cluster's events,
    /// `eviction-router.>`, or one cluster's with --cluster.
    #[arg(long)]
    pub subject: Option<String>,
    /// Follow one cluster (its name as in the sink's `cluster`).
    #[arg(long, conflicts_with = "subject")]
    pub cluster: Option<String>,
    /// Replay what the JetStream stream holds for the subject first, then follow (an ordered
    /// consumer; nothing is acknowledged or kept on the server). Without it, only new events.
    #[arg(long)]
    pub from_start: bool,
    /// Exit after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// A `.creds` file (user JWT and NKey seed).
    #[arg(long)]
    pub creds: Option<PathBuf>,
    /// A file holding an NKey seed.
    #[arg(long, conflicts_with = "creds")]
    pub nkey_seed_file: Option<PathBuf>,
    /// A token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true, conflicts_with_all = ["creds", "nkey_seed_file"])]
    pub token: Option<String>,
    /// PEM file of the CA certificates to trust (implies TLS).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

type Messages = Pin<Box<dyn Stream<Item = (Option<async_nats::HeaderMap>, Bytes)> + Send>>;

/// Runs `tail` until SIGINT, the end of the subscription, or `--count` events.
pub(crate) fn tail(args: TailArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return EXIT_IO;
        }
    };
    let code = runtime.block_on(run(args));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn run(args: TailArgs) -> u8 {
    let subject = match (&args.subject, &args.cluster) {
        (Some(subject), _) => subject.clone(),
        (None, Some(cluster)) => format!("eviction-router.{}.>", escape_token(cluster)),
        (None, None) => "eviction-router.>".to_owned(),
    };
    let mut options = async_nats::ConnectOptions::new().name("eviction-router tail");
    if let Some(path) = &args.creds {
        options = match options.credentials_file(path).await {
            Ok(o) => o,
            Err(e) => {
                eprintln!("error: cannot read --creds {}: {e}", path.display());
                return EXIT_IO;
            }
        };
    }
    if let Some(path) = &args.nkey_seed_file {
        match std::fs::read_to_string(path) {
            Ok(seed) => options = options.nkey(seed.trim().to_owned()),
            Err(e) => {
                eprintln!(
                    "error: cannot read --nkey-seed-file {}: {e}",
                    path.display()
                );
                return EXIT_IO;
            }
        }
    }
    if let Some(token) = &args.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &args.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let urls: Vec<&str> = args
        .nats
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    let client = match options.connect(urls).await {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: cannot connect to NATS at {}: {e}", args.nats);
            return EXIT_IO;
        }
    };
    let messages: Messages = if args.from_start {
        match replay(client.clone(), &subject).await {
            Ok(messages) => messages,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_IO;
            }
        }
    } else {
        match client.subscribe(subject.clone()).await {
            Ok(sub) => {
                // The subscription is registered on the server once flushed.
                let _ = client.flush().await;
                Box::pin(sub.map(|m| (m.headers, m.payload)))
            }
            Err(e) => {
                eprintln!("error: cannot subscribe to {subject}: {e}");
                return EXIT_IO;
            }
        }
    };
    eprintln!("tail: following {subject}");
    print(messages, args.count).await
}

/// An ordered consumer of the stream that captures `subject`, from its first message.
async fn replay(client: async_nats::Client, subject: &str) -> Result<Messages, String> {
    let js = jetstream::new(client);
    let name = js
        .stream_by_subject(subject)
        .await
        .map_err(|e| format!("no JetStream stream captures {subject}: {e}"))?;
    let stream = js
        .get_stream(&name)
        .await
        .map_err(|e| format!("cannot read stream {name}: {e}"))?;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot create a consumer on {name}: {e}"))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    Ok(Box::pin(messages.filter_map(|m| async move {
        match m {
            Ok(m) => Some((m.message.headers.clone(), m.message.payload.clone())),
            Err(e) => {
                eprintln!("warning: {e}");
                None
            }
        }
    })))
}

async fn print(mut messages: Messages, count: Option<u64>) -> u8 {
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    if count == Some(0) {
        return EXIT_OK;
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next = tokio::select! {
            _ = &mut ctrl_c => return EXIT_OK,
            next = messages.next() => next,
        };
        let Some((headers, payload)) = next else {
            return EXIT_OK;
        };
        let Some(event) = decode(headers.as_ref(), &payload) else {
            eprintln!("warning: skipped a message that is not a CloudEvent");
            continue;
        };
        // A closed pipe (`| head`) ends the command quietly.
        if writeln!(out, "{event}").and_then(|()| out.flush()).is_err() {
            return EXIT_OK;
        }
        printed += 1;
        if count.is_some_and(|c| printed >= c) {
            return EXIT_OK;
        }
    }
}
