//! `inject`: the fire drill for each cloud: its arguments and the dispatch. Each cloud's drill is
//! the `drill` module of its folder under [`crate::providers`]: the event body built by a pure
//! function (tested there by normalising it), and a thin sender.

use std::path::PathBuf;

use super::{EXIT_IO, EXIT_MALFORMED};

/// `eviction-router inject ...`
#[derive(Debug, clap::Args)]
pub struct InjectArgs {
    /// The cloud.
    #[arg(long, short, value_parser = ["aws", "azure", "gcp"])]
    pub(crate) provider: String,
    /// AWS: the EC2 instance id. Azure: the VM's resource id (a standalone VM or a scale-set VM,
    /// `.../virtualMachineScaleSets/<vmss>/virtualMachines/<N>`). GCP: the numeric instance id.
    #[arg(long)]
    pub(crate) instance_id: String,
    /// `interruption` (every cloud), `rebalance_recommendation` (AWS) or
    /// `scheduled_maintenance` (Azure, GCP).
    #[arg(long, default_value = "interruption", value_parser = ["interruption", "rebalance_recommendation", "scheduled_maintenance"])]
    pub(crate) kind: String,
    /// AWS: the EventBridge bus the rules are on.
    #[arg(long, default_value = "default")]
    pub(crate) event_bus: String,
    /// AWS: the availability zone, which lands in the ARN (and the providerID). GCP: the
    /// instance's zone (required).
    #[arg(long)]
    pub(crate) zone: Option<String>,
    /// GCP: the instance name (required).
    #[arg(long)]
    pub(crate) instance_name: Option<String>,
    /// GCP: the logging sink's topic, `projects/<project>/topics/<topic>` (Terraform output
    /// `topic`).
    #[arg(long)]
    pub(crate) topic: Option<String>,
    /// GCP: the Pub/Sub endpoint; by default `PUBSUB_EMULATOR_HOST`, else Google's.
    #[arg(long)]
    pub(crate) endpoint: Option<String>,
    /// Azure: the router's configuration file; the drill goes to the queue of its
    /// `azure_service_bus` source, with the same authentication.
    #[arg(long, short)]
    pub(crate) config: Option<PathBuf>,
}

/// Runs the drill; returns the exit code.
pub(super) fn inject(args: InjectArgs) -> u8 {
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
    let kinds: &[&str] = match args.provider.as_str() {
        "aws" => &["interruption", "rebalance_recommendation"],
        _ => &["interruption", "scheduled_maintenance"],
    };
    if !kinds.contains(&args.kind.as_str()) {
        eprintln!(
            "error: --kind {} is not a drill for {}; use one of: {}",
            args.kind,
            args.provider,
            kinds.join(", ")
        );
        return EXIT_MALFORMED;
    }
    match args.provider.as_str() {
        #[cfg(feature = "aws")]
        "aws" => runtime.block_on(crate::providers::aws::drill::send(&args)),
        #[cfg(feature = "azure")]
        "azure" => runtime.block_on(crate::providers::azure::drill::send(&args)),
        #[cfg(feature = "gcp")]
        "gcp" => runtime.block_on(crate::providers::gcp::drill::send(&args)),
        other => {
            eprintln!("error: this build has no `{other}` support");
            EXIT_IO
        }
    }
}

/// A unique id for a drill event (the Azure and GCP drills).
#[cfg(any(feature = "azure", feature = "gcp"))]
pub(crate) fn drill_id() -> String {
    format!(
        "drill-{}-{:08x}",
        jiff::Timestamp::now().as_millisecond(),
        fastrand::u32(..)
    )
}
