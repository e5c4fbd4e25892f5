//! Where a Node sits — its pool, instance type, zone and capacity type — read from the
//! well-known labels of each cloud and autoscaler. Pure.
//!
//! Two Spot Nodes of the same instance type in the same zone are *siblings*: interruptions are
//! correlated within such a pool (most same-type, same-zone co-interruptions fall within a few
//! minutes of each other), so the siblings of a Node going now are the likeliest to go next.

use std::collections::BTreeMap;

/// Labels that mark a Node as Spot (or preemptible) capacity, with the value that means so.
pub const SPOT_LABELS: [(&str, &str); 7] = [
    ("karpenter.sh/capacity-type", "spot"),
    ("eks.amazonaws.com/capacityType", "SPOT"),
    ("kubernetes.azure.com/scalesetpriority", "spot"),
    ("cloud.google.com/gke-spot", "true"),
    ("cloud.google.com/gke-preemptible", "true"),
    ("node.kubernetes.io/lifecycle", "spot"),
    ("scheduling.cast.ai/spot", "true"),
];
/// The instance type label (kubelet's well-known label), then its deprecated beta form.
pub const INSTANCE_TYPE_LABELS: [&str; 2] = [
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/instance-type",
];
/// The zone label, then its deprecated beta form.
pub const ZONE_LABELS: [&str; 2] = [
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];
/// The AWS AZ ID of a Node (EKS and Karpenter set it): the same ID is the same zone in every
/// account, where zone names are mapped per account.
pub const ZONE_ID_LABEL: &str = "topology.k8s.aws/zone-id";
/// Present on every Node Karpenter launched.
pub const KARPENTER_LABEL: &str = "karpenter.sh/nodepool";

/// A Node's place in the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The pool: the first configured pool label present, as (label, value).
    pub pool: Option<(String, String)>,
    /// The instance type (machine type, VM size).
    pub instance_type: Option<String>,
    /// The zone.
    pub zone: Option<String>,
    /// Whether the Node is Spot or preemptible capacity.
    pub spot: bool,
    /// Whether Karpenter launched it (and so replaces it itself): the NodePool label, or a
    /// `karpenter.sh` NodeClaim among its owners.
    pub karpenter: bool,
    /// Whether it is on-demand capacity standing in for Spot: a known capacity label says it is
    /// not Spot, or Cast AI marked it a Spot fallback.
    pub fallback: bool,
    /// The cloud, from `spec.providerID`.
    pub provider: Option<crate::event::Provider>,
    /// The AWS AZ ID ([`ZONE_ID_LABEL`]).
    pub zone_id: Option<String>,
    /// `metadata.creationTimestamp`.
    pub created_at: Option<jiff::Timestamp>,
}

/// Labels that say a Node is *not* Spot, with the values that mean so; a Node with one of these
/// and no Spot label is on-demand capacity.
pub const ON_DEMAND_LABELS: [(&str, &[&str]); 3] = [
    ("karpenter.sh/capacity-type", &["on-demand", "reserved"]),
    (
        "eks.amazonaws.com/capacityType",
        &["ON_DEMAND", "CAPACITY_BLOCK"],
    ),
    ("kubernetes.azure.com/scalesetpriority", &["regular"]),
];
/// GKE's node pool label.
pub const GKE_POOL_LABEL: &str = "cloud.google.com/gke-nodepool";
/// Cast AI's label on the on-demand Nodes it made because Spot was not to be had.
pub const CAST_FALLBACK_LABEL: &str = "scheduling.cast.ai/spot-fallback";

/// The cloud of a `spec.providerID`.
pub fn provider_of(provider_id: &str) -> Option<crate::event::Provider> {
    use crate::event::Provider;
    if provider_id.starts_with("aws://") {
        Some(Provider::Aws)
    } else if provider_id.starts_with("azure://") {
        Some(Provider::Azure)
    } else if provider_id.starts_with("gce://") {
        Some(Provider::Gcp)
    } else {
        None
    }
}

fn first(labels: &BTreeMap<String, String>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| labels.get(*k)).cloned()
}

impl Placement {
    /// The placement of a Node with these labels; `pool_labels` in order of preference.
    pub fn of(labels: &BTreeMap<String, String>, pool_labels: &[String]) -> Placement {
        Placement {
            pool: pool_labels
                .iter()
                .find_map(|k| labels.get(k).map(|v| (k.clone(), v.clone()))),
            instance_type: first(labels, &INSTANCE_TYPE_LABELS),
            zone: first(labels, &ZONE_LABELS),
            spot: SPOT_LABELS
                .iter()
                .any(|(k, v)| labels.get(*k).is_some_and(|l| l.eq_ignore_ascii_case(v))),
            karpenter: labels.contains_key(KARPENTER_LABEL),
            fallback: labels.get(CAST_FALLBACK_LABEL).is_some_and(|v| v == "true")
                || ON_DEMAND_LABELS
                    .iter()
                    .any(|(k, vs)| labels.get(*k).is_some_and(|v| vs.contains(&v.as_str())))
                // GKE marks Spot and preemptible Nodes only: a node-pool Node without either
                // label is on-demand.
                || (labels.contains_key(GKE_POOL_LABEL)
                    && !labels.contains_key("cloud.google.com/gke-spot")
                    && !labels.contains_key("cloud.google.com/gke-preemptible")),
            provider: None,
            zone_id: labels.get(ZONE_ID_LABEL).cloned(),
            created_at: None,
        }
    }

    /// `spot`, `on-demand`, or `None` when no label says.
    pub fn capacity_type(&self) -> Option<&'static str> {
        if self.spot {
            Some("spot")
        } else if self.fallback {
            Some("on-demand")
        } else {
            None
        }
    }

    /// What the router adds to the `details` of an event about this Node, for the pool
    /// statistics downstream (`report`): `pool`, `instance_type`, `zone`, `zone_id`,
    /// `capacity_type`, `node_created_at`, each where known.
    pub fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut d = serde_json::Map::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                d.insert(key.to_owned(), Value::String(v));
            }
        };
        put("pool", self.pool_name().map(str::to_owned));
        put("instance_type", self.instance_type.clone());
        put("zone", self.zone.clone());
        put("zone_id", self.zone_id.clone());
        put("capacity_type", self.capacity_type().map(str::to_owned));
        put("node_created_at", self.created_at.map(|t| t.to_string()));
        d
    }

    /// The pool's name, if known.
    pub fn pool_name(&self) -> Option<&str> {
        self.pool.as_ref().map(|(_, v)| v.as_str())
    }

    /// The (instance type, zone) of a Spot Node: the key its siblings share.
    pub fn spot_key(&self) -> Option<(String, String)> {
        match (self.spot, &self.instance_type, &self.zone) {
            (true, Some(t), Some(z)) => Some((t.clone(), z.clone())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_the_pool_type_zone_and_capacity_of_each_cloud() {
        let pools = vec![
            "karpenter.sh/nodepool".to_owned(),
            "eks.amazonaws.com/nodegroup".to_owned(),
        ];
        let eks = Placement::of(
            &labels(&[
                ("eks.amazonaws.com/nodegroup", "spot-a"),
                ("eks.amazonaws.com/capacityType", "SPOT"),
                ("node.kubernetes.io/instance-type", "m5.large"),
                ("topology.kubernetes.io/zone", "us-east-1a"),
            ]),
            &pools,
        );
        assert_eq!(eks.pool_name(), Some("spot-a"));
        assert_eq!(
            eks.spot_key(),
            Some(("m5.large".into(), "us-east-1a".into()))
        );
        assert!(!eks.karpenter);
        let aks = Placement::of(
            &labels(&[
                ("kubernetes.azure.com/scalesetpriority", "spot"),
                ("beta.kubernetes.io/instance-type", "Standard_D4s_v5"),
                ("failure-domain.beta.kubernetes.io/zone", "westeurope-1"),
            ]),
            &pools,
        );
        assert!(aks.spot && aks.pool.is_none());
        assert_eq!(aks.zone.as_deref(), Some("westeurope-1"));
        let on_demand = Placement::of(
            &labels(&[
                ("karpenter.sh/nodepool", "default"),
                ("karpenter.sh/capacity-type", "on-demand"),
                ("node.kubernetes.io/instance-type", "m5.large"),
                ("topology.kubernetes.io/zone", "us-east-1a"),
            ]),
            &pools,
        );
        assert!(on_demand.karpenter && !on_demand.spot && on_demand.fallback);
        assert!(!eks.fallback && !aks.fallback);
        let gke = |extra: &[(&str, &str)]| {
            let mut l = vec![("cloud.google.com/gke-nodepool", "pool-1")];
            l.extend_from_slice(extra);
            Placement::of(&labels(&l), &pools)
        };
        assert!(
            gke(&[]).fallback,
            "a GKE Node without a Spot label is on-demand"
        );
        assert!(!gke(&[("cloud.google.com/gke-spot", "true")]).fallback);
        assert_eq!(
            on_demand.spot_key(),
            None,
            "on-demand Nodes have no siblings"
        );
    }

    #[test]
    fn the_details_name_what_the_labels_say_and_nothing_else() {
        let mut eks = Placement::of(
            &labels(&[
                ("eks.amazonaws.com/nodegroup", "spot-a"),
                ("eks.amazonaws.com/capacityType", "SPOT"),
                ("node.kubernetes.io/instance-type", "m5.large"),
                ("topology.kubernetes.io/zone", "us-east-1a"),
                ("topology.k8s.aws/zone-id", "use1-az4"),
            ]),
            &["eks.amazonaws.com/nodegroup".to_owned()],
        );
        eks.created_at = Some("2026-11-23T08:00:00Z".parse().unwrap());
        assert_eq!(
            serde_json::Value::Object(eks.details()),
            serde_json::json!({
                "pool": "spot-a", "instance_type": "m5.large", "zone": "us-east-1a",
                "zone_id": "use1-az4", "capacity_type": "spot",
                "node_created_at": "2026-11-23T08:00:00Z",
            })
        );
        let bare = Placement::of(&labels(&[]), &[]);
        assert!(bare.details().is_empty());
        let od = Placement::of(&labels(&[("karpenter.sh/capacity-type", "on-demand")]), &[]);
        assert_eq!(od.details()["capacity_type"], "on-demand");
    }
}
