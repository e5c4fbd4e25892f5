//! The Node cache: one watch of every Node, kept as an index (instance → Node) and a
//! [`NodeView`] per Node. The message path reads it instead of the API server; the reconciler is
//! told the name of every Node that changed; the replacement tracker sees every Node.
//!
//! RBAC: `nodes` list, watch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::TryStreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::{mpsc, watch};

use super::index::{GKE_INSTANCE_ID_ANNOTATION, NodeIndex};
use super::intent::NodeView;
use super::replacement::{DEFAULT_POOL_LABELS, Replacement, Tracker};
use crate::event::EventData;

#[derive(Debug, Default)]
struct Inner {
    index: NodeIndex,
    views: HashMap<String, Arc<NodeView>>,
}

/// The cache. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct NodeCache {
    inner: RwLock<Inner>,
    synced: watch::Sender<bool>,
    pool_labels: Vec<String>,
}

impl NodeCache {
    /// An empty, unsynced cache that reads pools from the default pool labels.
    pub fn new() -> NodeCache {
        NodeCache::with_pool_labels(DEFAULT_POOL_LABELS.iter().map(|s| s.to_string()).collect())
    }

    /// An empty, unsynced cache that reads a Node's pool from the first of `pool_labels`
    /// present.
    pub fn with_pool_labels(pool_labels: Vec<String>) -> NodeCache {
        NodeCache {
            inner: RwLock::new(Inner::default()),
            synced: watch::Sender::new(false),
            pool_labels,
        }
    }

    /// The views of every cached Node for which `keep` holds.
    pub fn select(&self, keep: impl Fn(&NodeView) -> bool) -> Vec<Arc<NodeView>> {
        self.read()
            .views
            .values()
            .filter(|v| keep(v))
            .cloned()
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Plain maps replaced whole: a panic elsewhere cannot leave them half-updated.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The Node an event's instance is, and its view.
    pub fn resolve(&self, event: &EventData) -> Option<Arc<NodeView>> {
        let inner = self.read();
        let name = inner.index.resolve(event)?;
        inner.views.get(name).cloned()
    }

    /// The view of the Node `name`.
    pub fn get(&self, name: &str) -> Option<Arc<NodeView>> {
        self.read().views.get(name).cloned()
    }

    /// Every cached Node's name.
    pub fn names(&self) -> Vec<String> {
        self.read().views.keys().cloned().collect()
    }

    /// How many Nodes are cached.
    pub fn len(&self) -> usize {
        self.read().views.len()
    }

    /// Whether no Node is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a Node as just returned by the API server (a write's response), so that the next
    /// write does not wait for the watch to bring its new resourceVersion.
    pub fn observe(&self, node: &Node) {
        let mut inner = self.write();
        upsert(&mut inner, node, &self.pool_labels);
    }

    /// Whether the first list completed.
    pub fn synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until the first list completed, at most `limit`.
    pub async fn wait_synced(&self, limit: Duration) -> bool {
        let mut rx = self.synced.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Default for NodeCache {
    fn default() -> Self {
        NodeCache::new()
    }
}

fn upsert(inner: &mut Inner, node: &Node, pool_labels: &[String]) {
    let name = node.name_any();
    let pid = node.spec.as_ref().and_then(|s| s.provider_id.as_deref());
    let empty = BTreeMap::new();
    let annotations = node.metadata.annotations.as_ref().unwrap_or(&empty);
    inner.index.upsert(&name, pid, annotations);
    inner
        .views
        .insert(name, Arc::new(NodeView::placed(node, pool_labels)));
}

/// Where the watch reports what it saw.
#[derive(Debug)]
pub struct Feeds {
    /// The name of every Node that was added, changed or deleted; all of them after a relist.
    pub changed: mpsc::UnboundedSender<String>,
    /// The replacement tracker, and where the replacements it finds go.
    pub tracker: Arc<Mutex<Tracker>>,
    /// Found replacements.
    pub found: mpsc::UnboundedSender<Replacement>,
}

/// Watches every Node into `cache` until the process ends, retrying a failed watch.
pub async fn run(client: Client, cache: Arc<NodeCache>, feeds: Feeds) {
    let nodes: Api<Node> = Api::all(client);
    let stream = watcher(nodes, watcher::Config::default().any_semantic());
    let mut stream = std::pin::pin!(stream);
    let mut staging = Inner::default();
    loop {
        match stream.try_next().await {
            Ok(Some(event)) => apply(event, &cache, &mut staging, &feeds),
            Ok(None) => break,
            Err(e) => {
                tracing::warn!(error = %e, "The Node watch failed; retrying.");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn apply(event: watcher::Event<Node>, cache: &NodeCache, staging: &mut Inner, feeds: &Feeds) {
    match event {
        watcher::Event::Init => *staging = Inner::default(),
        watcher::Event::InitApply(node) => {
            upsert(staging, &node, &cache.pool_labels);
            track(feeds, &node);
        }
        watcher::Event::InitDone => {
            let fresh = std::mem::take(staging);
            let names: Vec<String> = {
                let mut inner = cache.write();
                let gone: Vec<String> = inner
                    .views
                    .keys()
                    .filter(|n| !fresh.views.contains_key(*n))
                    .cloned()
                    .collect();
                *inner = fresh;
                inner.views.keys().cloned().chain(gone).collect()
            };
            cache.synced.send_replace(true);
            for name in names {
                let _ = feeds.changed.send(name);
            }
        }
        watcher::Event::Apply(node) => {
            upsert(&mut cache.write(), &node, &cache.pool_labels);
            track(feeds, &node);
            let _ = feeds.changed.send(node.name_any());
        }
        watcher::Event::Delete(node) => {
            let name = node.name_any();
            if let Ok(mut tracker) = feeds.tracker.lock() {
                tracker.removed(&name);
            }
            {
                let mut inner = cache.write();
                inner.index.remove(&name);
                inner.views.remove(&name);
            }
            let _ = feeds.changed.send(name);
        }
    }
}

/// Feeds the replacement tracker; found replacements go to the service.
fn track(feeds: &Feeds, node: &Node) {
    let Ok(mut tracker) = feeds.tracker.lock() else {
        return;
    };
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let pool = tracker.pool_of(labels).cloned();
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let annotations = node.metadata.annotations.as_ref().unwrap_or(&empty);
    let identity = node
        .spec
        .as_ref()
        .and_then(|s| s.provider_id.clone())
        .map(|pid| match annotations.get(GKE_INSTANCE_ID_ANNOTATION) {
            Some(id) => format!("{pid}#{id}"),
            None => pid,
        });
    for replacement in tracker.observe(&node.name_any(), pool, ready, identity, Timestamp::now()) {
        let _ = feeds.found.send(replacement);
    }
}
