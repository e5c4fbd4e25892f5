//! Lease-based leader election (coordination.k8s.io/v1), the algorithm of client-go's
//! `leaderelection`: the holder renews `renewTime` every `renew_every`; anyone may take a Lease
//! whose `renewTime + leaseDurationSeconds` has passed; every write carries the resourceVersion
//! it read, so of two candidates only one wins (the other gets 409 Conflict).
//!
//! RBAC: `coordination.k8s.io` `leases` get, create, update, in the router's namespace.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Who we are and which Lease we contend for.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews, and a candidate retries.
    pub renew_every: Duration,
}

/// Contends for the Lease until `stop`; `leader` says whether we hold it.
pub async fn run(
    api: Api<Lease>,
    config: LeaseConfig,
    leader: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.renew_every);
    // A holder that cannot renew steps down well before its Lease expires (client-go's renew
    // deadline), so two replicas never both believe they lead.
    let renew_deadline = config.duration.mul_f64(2.0 / 3.0);
    let mut last_renewed: Option<std::time::Instant> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let holds = match try_acquire_or_renew(&api, &config).await {
            Ok(holds) => {
                last_renewed = holds.then(std::time::Instant::now);
                holds
            }
            Err(e) => {
                tracing::warn!(lease = %config.name, error = %e, "Cannot read or write the Lease.");
                *leader.borrow() && last_renewed.is_some_and(|t| t.elapsed() < renew_deadline)
            }
        };
        let was = *leader.borrow();
        if holds != was {
            if holds {
                tracing::info!(lease = %config.name, identity = %config.identity, "Became the leader.");
            } else {
                tracing::warn!(lease = %config.name, identity = %config.identity, "Lost the leadership.");
            }
            let _ = leader.send(holds);
        }
    }
    // Step down: let a standby take over without waiting for expiry.
    if *leader.borrow() {
        let _ = release(&api, &config).await;
        let _ = leader.send(false);
    }
}

fn micro(t: Timestamp) -> MicroTime {
    MicroTime(t)
}

async fn try_acquire_or_renew(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let duration = i32::try_from(config.duration.as_secs()).unwrap_or(i32::MAX);
    let Some(mut lease) = api.get_opt(&config.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                namespace: Some(config.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(duration),
                acquire_time: Some(micro(now)),
                renew_time: Some(micro(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let ours = spec.holder_identity.as_deref() == Some(config.identity.as_str());
    if !ours {
        let expires = spec
            .renew_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            + jiff::SignedDuration::from_secs(i64::from(
                spec.lease_duration_seconds.unwrap_or(duration),
            ));
        let held = spec
            .holder_identity
            .as_deref()
            .is_some_and(|h| !h.is_empty());
        if held && expires > now {
            return Ok(false);
        }
        spec.holder_identity = Some(config.identity.clone());
        spec.acquire_time = Some(micro(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.renew_time = Some(micro(now));
    spec.lease_duration_seconds = Some(duration);
    // The resourceVersion read above makes this a compare-and-swap.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<(), kube::Error> {
    if let Some(mut lease) = api.get_opt(&config.name).await?
        && let Some(spec) = lease.spec.as_mut()
        && spec.holder_identity.as_deref() == Some(config.identity.as_str())
    {
        spec.holder_identity = None;
        spec.renew_time = None;
        api.replace(&config.name, &PostParams::default(), &lease)
            .await?;
    }
    Ok(())
}
