//! Replacement latency: for an interruption or termination of Node N in pool P, the first Node of
//! P other than N (or N recreated with a new providerID) that becomes Ready after the notice is
//! its replacement; `notice → Ready` is the number no other tool reports. Pure: the Node watch
//! feeds it, the clock is passed in.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};

use crate::event::{Event, EventData, Instance, Kind, NodeRef};

/// The pool labels looked for, in order, when none are configured.
pub const DEFAULT_POOL_LABELS: [&str; 4] = [
    "karpenter.sh/nodepool",
    "eks.amazonaws.com/nodegroup",
    "kubernetes.azure.com/agentpool",
    "cloud.google.com/gke-nodepool",
];

/// A capacity loss waiting for its replacement.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The Node that is going away.
    pub node: String,
    /// Its identity at the notice: providerID and, on GKE, instance id (a recreated Node has
    /// another).
    pub provider_id: Option<String>,
    /// Its pool.
    pub pool: String,
    /// The event that announced it.
    pub event: Event,
    /// When it was cordoned (admitted), and when its drain ended, if it did.
    pub cordoned_at: Option<Timestamp>,
    /// When its drain ended.
    pub drained_at: Option<Timestamp>,
}

/// A replacement found.
#[derive(Debug, Clone)]
pub struct Replacement {
    /// What it replaces.
    pub pending: Pending,
    /// The new Node.
    pub node: String,
    /// The new Node's providerID.
    pub provider_id: Option<String>,
    /// When the new Node was first seen.
    pub created_at: Timestamp,
    /// When it was seen Ready.
    pub ready_at: Timestamp,
}

impl Replacement {
    /// `notice → Ready`.
    pub fn latency(&self) -> SignedDuration {
        self.ready_at
            .duration_since(self.pending.event.data.occurred_at)
    }

    /// The `replacement_ready` event for the stream.
    pub fn to_event(&self) -> Event {
        let old = &self.pending.event.data;
        // The identity is the providerID, with `#<instance id>` on GKE.
        let (provider_id, gce_id) = match self.provider_id.as_deref() {
            Some(identity) => match identity.split_once('#') {
                Some((pid, id)) => (Some(pid), Some(id)),
                None => (Some(identity), None),
            },
            None => (None, None),
        };
        let id = gce_id
            .or_else(|| provider_id.and_then(|p| p.rsplit('/').next()))
            .unwrap_or(&self.node)
            .to_owned();
        let instance = Instance {
            id,
            name: Some(self.node.clone()),
            provider_id: provider_id.map(str::to_owned),
            resource_id: None,
        };
        let mut data = EventData::new(
            old.provider,
            Kind::ReplacementReady,
            "replacement_ready",
            instance,
            self.ready_at,
        );
        data.account = old.account.clone();
        data.region = old.region.clone();
        data.node = Some(NodeRef {
            name: self.node.clone(),
        });
        data.details
            .insert("replaces_node".into(), self.pending.node.clone().into());
        data.details.insert(
            "replaces_event".into(),
            self.pending.event.id.clone().into(),
        );
        data.details
            .insert("replaces_kind".into(), old.kind.as_str().into());
        data.details
            .insert("pool".into(), self.pending.pool.clone().into());
        data.details.insert(
            "latency_seconds".into(),
            self.latency().as_secs_f64().into(),
        );
        // The recovery so far, in seconds from the notice (the last phase, the evicted pods
        // running again, comes later and is in `recovery_phase_seconds`).
        let since = |t: Timestamp| t.duration_since(old.occurred_at).as_secs_f64();
        let mut phases = serde_json::Map::new();
        if let Some(t) = self.pending.cordoned_at {
            phases.insert("cordoned".into(), since(t).into());
        }
        if let Some(t) = self.pending.drained_at {
            phases.insert("drained".into(), since(t).into());
        }
        phases.insert("replacement_created".into(), since(self.created_at).into());
        phases.insert("replacement_ready".into(), since(self.ready_at).into());
        data.details.insert("phases".into(), phases.into());
        Event::new(format!("{}/replacement", self.pending.event.id), data)
    }
}

#[derive(Debug, Clone)]
struct Seen {
    pool: Option<String>,
    ready: bool,
    provider_id: Option<String>,
    /// When this incarnation (providerID) was first seen.
    first_seen: Timestamp,
}

/// Tracks pending replacements against the Node watch.
#[derive(Debug)]
pub struct Tracker {
    pool_labels: Vec<String>,
    nodes: HashMap<String, Seen>,
    pending: Vec<(Pending, Timestamp)>,
    timeout: SignedDuration,
}

impl Tracker {
    /// Gives up on a replacement after `timeout`.
    pub fn new(pool_labels: Vec<String>, timeout: SignedDuration) -> Self {
        Tracker {
            pool_labels,
            nodes: HashMap::new(),
            pending: Vec::new(),
            timeout,
        }
    }

    /// The pool of a Node from its labels.
    pub fn pool_of<'a>(
        &self,
        labels: &'a std::collections::BTreeMap<String, String>,
    ) -> Option<&'a String> {
        self.pool_labels.iter().find_map(|k| labels.get(k))
    }

    /// A Node was seen (added or changed): returns the replacements it completes.
    pub fn observe(
        &mut self,
        name: &str,
        pool: Option<String>,
        ready: bool,
        provider_id: Option<String>,
        now: Timestamp,
    ) -> Vec<Replacement> {
        let first_seen = self
            .nodes
            .get(name)
            .filter(|s| s.provider_id == provider_id)
            .map_or(now, |s| s.first_seen);
        let previous = self.nodes.insert(
            name.to_owned(),
            Seen {
                pool: pool.clone(),
                ready,
                provider_id: provider_id.clone(),
                first_seen,
            },
        );
        let became_ready = ready
            && match &previous {
                None => true,
                Some(p) => !p.ready || p.provider_id != provider_id,
            };
        let Some(pool) = pool.filter(|_| became_ready) else {
            return Vec::new();
        };
        // The oldest pending loss of this pool that this Node can replace.
        let position = self.pending.iter().position(|(p, _)| {
            p.pool == pool
                && (p.node != name || p.provider_id != provider_id)
                && p.event.data.occurred_at <= now
        });
        match position {
            Some(i) => {
                let (pending, _) = self.pending.remove(i);
                vec![Replacement {
                    pending,
                    node: name.to_owned(),
                    provider_id,
                    created_at: first_seen,
                    ready_at: now,
                }]
            }
            None => Vec::new(),
        }
    }

    /// A Node was deleted.
    pub fn removed(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Waits for a replacement of `node`, lost to `event`, when its pool is known. Returns
    /// whether it is now pending (a second event for the same Node does not add another).
    pub fn expect(&mut self, node: &str, event: &Event, now: Timestamp) -> bool {
        let Some(seen) = self.nodes.get(node) else {
            return false;
        };
        let Some(pool) = seen.pool.clone() else {
            return false;
        };
        if self.pending.iter().any(|(p, _)| p.node == node) {
            return false;
        }
        let pending = Pending {
            node: node.to_owned(),
            provider_id: seen.provider_id.clone(),
            pool,
            event: event.clone(),
            cordoned_at: Some(now),
            drained_at: None,
        };
        self.pending.push((pending, now + self.timeout));
        true
    }

    /// The drain of `node` ended at `at`.
    pub fn drained(&mut self, node: &str, at: Timestamp) {
        for (p, _) in self.pending.iter_mut().filter(|(p, _)| p.node == node) {
            p.drained_at.get_or_insert(at);
        }
    }

    /// Drops and returns the pending replacements past their timeout.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Pending> {
        let (expired, kept): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(_, until)| *until <= now);
        self.pending = kept;
        expired.into_iter().map(|(p, _)| p).collect()
    }

    /// How many replacements are awaited.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Provider;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn loss(at: Timestamp) -> Event {
        let instance = Instance {
            id: "i-old".into(),
            name: None,
            provider_id: None,
            resource_id: None,
        };
        let mut d = EventData::new(Provider::Aws, Kind::Interruption, "x", instance, at);
        d.account = Some("1".into());
        Event::new("evt", d)
    }

    fn tracker() -> Tracker {
        Tracker::new(
            DEFAULT_POOL_LABELS.iter().map(|s| s.to_string()).collect(),
            SignedDuration::from_mins(30),
        )
    }

    #[test]
    fn the_first_node_of_the_pool_ready_after_the_notice_is_the_replacement() {
        let mut tr = tracker();
        tr.observe(
            "old",
            Some("spot".into()),
            true,
            Some("aws:///z/i-old".into()),
            t(0),
        );
        tr.observe("other-pool", Some("ondemand".into()), true, None, t(0));
        assert!(tr.expect("old", &loss(t(10)), t(10)));
        assert!(
            !tr.expect("old", &loss(t(11)), t(11)),
            "one pending per Node"
        );
        // Another pool's Node, and the lost Node itself changing, replace nothing.
        assert!(
            tr.observe("x", Some("ondemand".into()), true, None, t(20))
                .is_empty()
        );
        assert!(
            tr.observe(
                "old",
                Some("spot".into()),
                false,
                Some("aws:///z/i-old".into()),
                t(21)
            )
            .is_empty()
        );
        tr.drained("old", t(30));
        // A new spot Node joins not ready, then turns Ready.
        assert!(
            tr.observe(
                "new",
                Some("spot".into()),
                false,
                Some("aws:///z/i-new".into()),
                t(40)
            )
            .is_empty()
        );
        let r = tr.observe(
            "new",
            Some("spot".into()),
            true,
            Some("aws:///z/i-new".into()),
            t(95),
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].latency(), SignedDuration::from_secs(85));
        let e = r[0].to_event();
        assert_eq!(e.data.kind, Kind::ReplacementReady);
        assert_eq!(e.id, "evt/replacement");
        assert_eq!(e.data.instance.id, "i-new");
        assert_eq!(e.data.details["replaces_node"], "old");
        assert_eq!(e.data.details["latency_seconds"], 85.0);
        // The phases, from the notice at 10: cordoned at 10, drained at 30, the new Node seen
        // at 40 and Ready at 95.
        let phases = &e.data.details["phases"];
        assert_eq!(phases["cordoned"], 0.0);
        assert_eq!(phases["drained"], 20.0);
        assert_eq!(phases["replacement_created"], 30.0);
        assert_eq!(phases["replacement_ready"], 85.0);
        assert_eq!(tr.pending(), 0);
    }

    #[test]
    fn a_node_recreated_under_the_same_name_counts_only_as_a_new_incarnation() {
        let mut tr = tracker();
        // GKE: same name and providerID; the instance id (part of the identity) changes.
        tr.observe(
            "gke-a",
            Some("p".into()),
            true,
            Some("gce://p/z/gke-a#111".into()),
            t(0),
        );
        tr.expect("gke-a", &loss(t(5)), t(5));
        tr.observe(
            "gke-a",
            Some("p".into()),
            false,
            Some("gce://p/z/gke-a#111".into()),
            t(7),
        );
        assert!(
            tr.observe(
                "gke-a",
                Some("p".into()),
                true,
                Some("gce://p/z/gke-a#111".into()),
                t(8)
            )
            .is_empty(),
            "the same machine back from a reboot is no replacement"
        );
        let r = tr.observe(
            "gke-a",
            Some("p".into()),
            true,
            Some("gce://p/z/gke-a#222".into()),
            t(50),
        );
        assert_eq!(r.len(), 1, "the recreated VM is");
    }

    #[test]
    fn nodes_without_a_pool_are_not_tracked_and_waits_time_out() {
        let mut tr = tracker();
        tr.observe("lonely", None, true, None, t(0));
        assert!(!tr.expect("lonely", &loss(t(1)), t(1)));
        tr.observe("n", Some("p".into()), true, None, t(0));
        assert!(tr.expect("n", &loss(t(1)), t(1)));
        assert!(tr.expire(t(1000)).is_empty());
        assert_eq!(tr.expire(t(1 + 1800)).len(), 1);
        assert_eq!(tr.pending(), 0);
    }
}
