//! The Node index: from an event's instance to a Node name with no API call and no list per event.
//!
//! Keys are derived from `spec.providerID` and the GKE instance-id annotation, never from the
//! hostname (node names and hostnames differ across clouds and node pools):
//!
//! | cloud | Node side | event side |
//! |---|---|---|
//! | AWS | the instance id, last segment of `aws:///<zone>/<id>` | `instance.id` |
//! | Azure | the resource id in `azure://<id>`, lowercased | `instance.id`, lowercased |
//! | GCP | annotation `container.googleapis.com/instance_id`; else `gce://<project>/<zone>/<name>` | `instance.id`; `instance.provider_id` |
//!
//! GKE recreates a preempted VM under the same name with a new instance id: a Node that carries
//! the instance-id annotation matches only its own id, so an event about the old VM never cordons
//! its replacement.

use std::collections::{BTreeMap, HashMap};

use crate::event::{EventData, Provider};

/// The GKE annotation holding a Node's numeric instance id.
pub const GKE_INSTANCE_ID_ANNOTATION: &str = "container.googleapis.com/instance_id";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    AwsInstance(String),
    AzureResource(String),
    GceInstanceId(String),
    GceName(String),
}

/// What the index keeps of a Node.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    keys: Vec<Key>,
    /// Whether the Node carries the GKE instance-id annotation.
    has_gce_id: bool,
}

/// An index of Nodes by the keys events carry.
#[derive(Debug, Default)]
pub struct NodeIndex {
    by_key: HashMap<Key, String>,
    nodes: HashMap<String, Entry>,
}

impl NodeIndex {
    /// An empty index.
    pub fn new() -> Self {
        NodeIndex::default()
    }

    /// Adds or updates a Node from its name, `spec.providerID` and annotations.
    pub fn upsert(
        &mut self,
        name: &str,
        provider_id: Option<&str>,
        annotations: &BTreeMap<String, String>,
    ) {
        self.remove(name);
        let mut keys = Vec::new();
        let gce_id = annotations
            .get(GKE_INSTANCE_ID_ANNOTATION)
            .filter(|v| !v.is_empty());
        if let Some(id) = gce_id {
            keys.push(Key::GceInstanceId(id.clone()));
        }
        if let Some(pid) = provider_id {
            if let Some(rest) = pid.strip_prefix("aws://") {
                if let Some(id) = rest.rsplit('/').next().filter(|s| s.starts_with("i-")) {
                    keys.push(Key::AwsInstance(id.to_owned()));
                }
            } else if let Some(rest) = pid.strip_prefix("azure://") {
                keys.push(Key::AzureResource(rest.to_ascii_lowercase()));
            } else if let Some(rest) = pid.strip_prefix("gce://") {
                keys.push(Key::GceName(rest.to_owned()));
            }
        }
        for key in &keys {
            self.by_key.insert(key.clone(), name.to_owned());
        }
        self.nodes.insert(
            name.to_owned(),
            Entry {
                keys,
                has_gce_id: gce_id.is_some(),
            },
        );
    }

    /// Forgets a Node.
    pub fn remove(&mut self, name: &str) {
        if let Some(entry) = self.nodes.remove(name) {
            for key in entry.keys {
                if self.by_key.get(&key).is_some_and(|n| n == name) {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    /// How many Nodes are indexed.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no Node is indexed.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The Node the event's instance is, if it is a Node of this cluster.
    pub fn resolve(&self, event: &EventData) -> Option<&str> {
        let id = &event.instance.id;
        let found = match event.provider {
            Provider::Aws => self.by_key.get(&Key::AwsInstance(id.clone())),
            Provider::Azure => self
                .by_key
                .get(&Key::AzureResource(id.to_ascii_lowercase()))
                .or_else(|| {
                    let pid = event.instance.provider_id.as_deref()?;
                    self.by_key.get(&Key::AzureResource(
                        pid.strip_prefix("azure://")?.to_ascii_lowercase(),
                    ))
                }),
            Provider::Gcp => self
                .by_key
                .get(&Key::GceInstanceId(id.clone()))
                .or_else(|| {
                    let name = event
                        .instance
                        .provider_id
                        .as_deref()?
                        .strip_prefix("gce://")?;
                    let node = self.by_key.get(&Key::GceName(name.to_owned()))?;
                    // A Node that names its instance id is another incarnation: not this event's.
                    (!self.nodes.get(node)?.has_gce_id).then_some(node)
                }),
        };
        found.map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Instance, Kind};

    fn event(provider: Provider, id: &str, provider_id: Option<&str>) -> EventData {
        let instance = Instance {
            id: id.into(),
            name: None,
            provider_id: provider_id.map(Into::into),
            resource_id: None,
        };
        EventData::new(
            provider,
            Kind::Interruption,
            "x",
            instance,
            jiff::Timestamp::UNIX_EPOCH,
        )
    }

    fn no_annotations() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn aws_matches_the_instance_id_whatever_the_zone_or_hostname() {
        let mut idx = NodeIndex::new();
        idx.upsert(
            "ip-10-0-1-5.ec2.internal",
            Some("aws:///us-east-1b/i-0abc"),
            &no_annotations(),
        );
        assert_eq!(
            idx.resolve(&event(Provider::Aws, "i-0abc", None)),
            Some("ip-10-0-1-5.ec2.internal")
        );
        assert_eq!(
            idx.resolve(&event(Provider::Aws, "i-0other", None)),
            None,
            "foreign instance"
        );
    }

    #[test]
    fn azure_matches_the_resource_id_case_insensitively() {
        let mut idx = NodeIndex::new();
        idx.upsert(
            "aks-spot-12345678-vmss000003",
            Some("azure:///subscriptions/s/resourceGroups/mc_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-spot-12345678-vmss/virtualMachines/3"),
            &no_annotations(),
        );
        let e = event(
            Provider::Azure,
            "/subscriptions/s/resourceGroups/MC_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-spot-12345678-vmss/virtualMachines/3",
            None,
        );
        assert_eq!(idx.resolve(&e), Some("aks-spot-12345678-vmss000003"));
    }

    #[test]
    fn gcp_matches_by_instance_id_and_never_the_recreated_incarnation() {
        let mut idx = NodeIndex::new();
        let mut ann = BTreeMap::new();
        ann.insert(GKE_INSTANCE_ID_ANNOTATION.to_owned(), "222".to_owned());
        idx.upsert(
            "gke-pool-a-x9k2",
            Some("gce://p/europe-west1-c/gke-pool-a-x9k2"),
            &ann,
        );
        let pid = Some("gce://p/europe-west1-c/gke-pool-a-x9k2");
        assert_eq!(
            idx.resolve(&event(Provider::Gcp, "222", pid)),
            Some("gke-pool-a-x9k2")
        );
        // The old VM (id 111) was preempted; the Node now is its replacement (id 222).
        assert_eq!(idx.resolve(&event(Provider::Gcp, "111", pid)), None);
        // Without the annotation, the providerID name is all there is.
        let mut idx = NodeIndex::new();
        idx.upsert("gke-pool-a-x9k2", pid, &no_annotations());
        assert_eq!(
            idx.resolve(&event(Provider::Gcp, "111", pid)),
            Some("gke-pool-a-x9k2")
        );
    }

    #[test]
    fn updates_and_removals_keep_the_index_exact() {
        let mut idx = NodeIndex::new();
        idx.upsert("n1", Some("aws:///z/i-1"), &no_annotations());
        idx.upsert("n1", Some("aws:///z/i-2"), &no_annotations());
        assert_eq!(idx.resolve(&event(Provider::Aws, "i-1", None)), None);
        assert_eq!(idx.resolve(&event(Provider::Aws, "i-2", None)), Some("n1"));
        idx.remove("n1");
        assert!(idx.is_empty());
        assert_eq!(idx.resolve(&event(Provider::Aws, "i-2", None)), None);
    }
}
