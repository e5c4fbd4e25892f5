//! The command line: what each subcommand takes, and the exit codes it promises.

mod demo;
#[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
pub(crate) mod inject;
mod normalize;
mod report;
mod service;
mod tail;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::event::Provider;

/// Exit code: at least one event was printed (or the command succeeded).
pub const EXIT_OK: u8 = 0;
/// Exit code: the input could not be read (missing file, I/O error).
pub const EXIT_IO: u8 = 1;
/// Exit code: the input is malformed; what is wrong is printed on stderr.
pub const EXIT_MALFORMED: u8 = 2;
/// Exit code: the input is valid but produces no event; the reason is printed on stderr.
pub const EXIT_NO_EVENT: u8 = 3;
/// Exit code of `run` and `check-config` for a configuration error (also `EXIT_MALFORMED`).
pub const EXIT_CONFIG: u8 = 2;

/// Routes cloud Spot interruption and maintenance signals into one event schema and into the
/// Kubernetes cluster.
///
/// AWS (EventBridge → SQS), Azure (Event Grid → Service Bus or webhook) and GCP (logging sink →
/// Pub/Sub) signals become one CloudEvents 1.0 stream of `eviction-router.<kind>.v1` events.
#[derive(Debug, Parser)]
#[command(name = "eviction-router", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Normalise one raw message body, as the queue delivers it, into event JSON lines.
    ///
    /// Exit codes: 0 when at least one event was printed; 3 when the input is valid but yields no
    /// event (the reason goes to stderr); 2 when the input is malformed (what is wrong goes to
    /// stderr); 1 when the input cannot be read.
    #[command(after_help = "Examples:\n  \
        eviction-router normalize --provider aws examples/events/aws/spot-interruption-warning.json\n  \
        aws sqs receive-message ... --query 'Messages[0].Body' --output text | eviction-router normalize --provider aws -")]
    Normalize {
        /// Which cloud the body comes from.
        #[arg(long, short, value_parser = parse_provider)]
        provider: Provider,
        /// The file holding the body, or `-` for standard input.
        #[arg(default_value = "-")]
        input: PathBuf,
    },
    /// Normalise a set of sample files or directories and print the stream, then a summary.
    ///
    /// Directories are walked for `*.json` files in name order. The provider of each file is
    /// `--provider`, or else the `aws`, `azure` or `gcp` directory it sits under. Events go to
    /// stdout as JSON lines; ignored and malformed files and the summary go to stderr. Exit code
    /// 0 when every file was valid, 2 when any was malformed, 1 when any could not be read.
    #[command(after_help = "Example:\n  eviction-router replay examples/events")]
    Replay {
        /// The provider of every file, instead of inferring it from the path.
        #[arg(long, short, value_parser = parse_provider)]
        provider: Option<Provider>,
        /// Files or directories of message bodies.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Push the bundled samples of all three clouds through the pipeline in-process and exit.
    ///
    /// The samples go through the same router `run` uses, with a dry-run cluster and the stdout
    /// sink: the normalised stream goes to stdout; the cluster actions it would take, a duplicate
    /// delivery, and a summary go to stderr. No cloud account, no cluster.
    Demo,
    /// Run the router until SIGTERM or SIGINT.
    ///
    /// Without --config it runs the embedded default: POST raw provider bodies to
    /// http://127.0.0.1:8080/v1/ingest/<aws|azure|gcp>; actions are planned and logged (dry run);
    /// events are printed on stdout. Logs go to stderr. Exit 2 on a configuration error, 1 when
    /// the service cannot start.
    Run {
        /// The YAML configuration (see docs/configuration.md).
        #[arg(long, short, env = "EVICTION_ROUTER_CONFIG")]
        config: Option<PathBuf>,
        /// Listen on this address instead of `server.listen` (e.g. 127.0.0.1:9090).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Validate a configuration file and exit: 0 when valid, 2 with the offending key when not.
    CheckConfig {
        /// The YAML configuration.
        config: PathBuf,
    },
    /// Fire drill: send a realistic test event into the cloud's queue to prove
    /// queue → router → cluster. The router treats it like the real signal and marks it
    /// `details.drill = true`.
    ///
    /// AWS publishes through EventBridge under the source `eviction-router.drill` (AWS reserves
    /// `aws.*`) with the real detail-type. Azure sends a scheduled event (Preempt or Reboot) into
    /// the Service Bus queue, as Event Grid would. GCP publishes an audit LogEntry
    /// (`compute.instances.preempted` or `upcomingMaintenance`) to the logging sink's topic.
    #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
    Inject(inject::InjectArgs),
    /// Print the fleet's event stream from NATS as JSON lines (structured CloudEvents with the
    /// `cluster` attribute), as the routers' `nats` sinks publish it. Exit 1 when NATS cannot be
    /// reached.
    Tail(tail::TailArgs),
    /// Per-pool Spot statistics over a normalised stream (JSON lines), as a table; with --html
    /// also a self-contained page with charts.
    ///
    /// For each pool and each (instance type, zone): Spot node-hours, interruptions per 1,000
    /// node-hours, lifetime before the notice, rebalance recommendations followed by an
    /// interruption within 1 h, bursts, and recovery latency by phase. Exit codes: 0 with a
    /// report; 3 when the stream holds no event; 2 when lines (or --published) are malformed,
    /// named on stderr (the report of the rest is still printed); 1 when a file cannot be read
    /// or written.
    #[command(after_help = "Examples:\n  \
        eviction-router report events.jsonl\n  \
        eviction-router run | tee events.jsonl   # later: eviction-router report events.jsonl --html pools.html\n  \
        eviction-router report --published rates.csv --html pools.html - < events.jsonl")]
    Report(report::ReportArgs),
}

fn parse_provider(s: &str) -> Result<Provider, String> {
    s.parse::<Provider>().map_err(|e| e.to_string())
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    // Several TLS stacks are linked (the AWS SDK's, reqwest's, kube's); name the process-wide
    // rustls provider once so none of them has to guess. Only fails if one is already set.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Normalize { provider, input } => normalize::normalize(provider, &input),
        Command::Replay { provider, paths } => normalize::replay(provider, &paths),
        Command::Demo => demo::demo(),
        Command::Run { config, listen } => service::run(config.as_deref(), listen),
        Command::CheckConfig { config } => service::check_config(&config),
        #[cfg(any(feature = "aws", feature = "azure", feature = "gcp"))]
        Command::Inject(args) => inject::inject(args),
        Command::Tail(args) => tail::tail(args),
        Command::Report(args) => report::report(args),
    }
}
