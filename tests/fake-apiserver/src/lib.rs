//! A narrow fake of the Kubernetes API server, for eviction-router's tests.
//!
//! It speaks the JSON REST protocol for a fixed set of resources — core/v1 `namespaces`, `nodes`,
//! `pods` (with `status` and `eviction`) and `podtemplates`, policy/v1 `poddisruptionbudgets`,
//! events.k8s.io/v1 `events`, coordination.k8s.io/v1 `leases`, apps/v1 `daemonsets` and
//! scheduling.k8s.io/v1 `priorityclasses` — plus, once [`FakeApiServer::serve_capacity_buffers`]
//! enables it as if its CRD were installed, Cluster Autoscaler's `autoscaling.x-k8s.io`
//! `capacitybuffers`; well enough to drive kube-rs (in process, through
//! [`FakeApiServer::service`]) and `kubectl` (over HTTP, through [`FakeApiServer::start_http`] or
//! the `fake-apiserver` binary).
//!
//! Modelled: optimistic concurrency (resourceVersion preconditions on update, patch and
//! delete), finalizers, the status subresources, JSON / merge / strategic merge patches, watches
//! with bookmarks and 410 Gone, the Eviction API with PodDisruptionBudgets, Priority admission
//! (a pod's `spec.priority` and `spec.preemptionPolicy` resolved from its PriorityClass, with the
//! apiserver's 403 for a missing class or a disagreeing priority; the built-in
//! `system-cluster-critical` and `system-node-critical` classes exist from the start), and — once
//! [`FakeApiServer::enforce_rbac`] is called — RBAC authorization of every request (see
//! [`Rbac`]), the optional resources included: a request the manifests do not grant gets the
//! apiserver's 403 Forbidden.
//!
//! Opt-in, [`FakeApiServer::simulate`] runs a small cluster's controllers against the store — a
//! scheduler with preemption, a kubelet, ReplicaSet-like workloads, the disruption controller,
//! the pod garbage collector and a Cluster Autoscaler over node pools, CapacityBuffers included
//! — and reports bindings, launches, disrupted pods and how long their workloads were a pod
//! short, and budget violations ([`Sim`], [`SimReport`]; what each controller copies and leaves
//! out is in the [`sim`] module's documentation).
//!
//! Not modelled: authentication (with RBAC enforced every request is the one configured user;
//! without it nothing is checked), schema validation, admission beyond namespace existence and
//! priority, controllers unless a simulation runs (no kubelet, scheduler, garbage collector or
//! disruption controller), and graceful termination: a deleted or evicted pod is removed at once
//! whatever `gracePeriodSeconds` says (no deletionTimestamp, no kubelet to confirm).
//! [`FakeApiServer::evictions`] records the grace period each accepted eviction asked for.
//! Objects are stored as JSON exactly as sent; the handle's store methods (`insert`, `update`, …)
//! bypass admission as well as RBAC.
//!
//! ```text
//! // In process (no sockets; needs a Tokio runtime):
//! let fake = FakeApiServer::new();
//! let client = kube::Client::new(fake.service(), "default");
//! fake.insert(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}))?;
//! fake.faults().fail_next("PATCH", "/api/v1/nodes/n1", 1);
//!
//! // Authorize every request as the chart's service account would be:
//! let manifests = std::fs::read_to_string("deploy/manifests/eviction-router.yaml")?;
//! let user = "system:serviceaccount:eviction-router:eviction-router";
//! fake.enforce_rbac(Rbac::from_manifests(&manifests, user)?);
//! assert!(fake.denied().is_empty());
//!
//! // Over HTTP on 127.0.0.1, e.g. for kubectl or a kubeconfig-driven binary:
//! let (addr, fake) = FakeApiServer::start_http().await?;
//! std::fs::write(path, fake_apiserver::kubeconfig(addr))?;
//! ```
//!
//! The `fake-apiserver` binary does the same from the command line:
//! `fake-apiserver --listen 127.0.0.1:0 --seed objects.yaml --kubeconfig kubeconfig` prints
//! `127.0.0.1:PORT` as its first line once the kubeconfig is written, and serves until
//! interrupted; `--rbac manifests.yaml --as USER` enforces RBAC.

mod admission;
mod discovery;
mod error;
mod eviction;
mod faults;
mod patch;
mod rbac;
mod resources;
mod selector;
mod service;
pub mod sim;
mod store;
mod watch;

use serde_json::Value;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

pub use error::ApiError;
pub use eviction::EvictionRecord;
pub use faults::{Faults, RequestRecord};
pub use rbac::{Attributes, Denial, Rbac, RbacError};
pub use sim::{
    Binding, Disruption, Ending, NodeLaunch, PdbViolation, PoolSpec, Resources, Sim, SimConfig,
    SimReport, WorkloadSpec,
};

use store::{Deleted, Preconditions, Store, Target};

/// The string at a JSON pointer, or "" when absent.
pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The integer at a JSON pointer, or 0 when absent.
pub(crate) fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// State shared by the service, the watch tasks and every handle.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    pub(crate) faults: faults::FaultState,
    /// The store's latest resourceVersion, so watches wake on every write.
    pub(crate) changes: tokio::sync::watch::Sender<u64>,
    /// Bumped to end every open watch.
    pub(crate) watch_epoch: tokio::sync::watch::Sender<u64>,
    pub(crate) rbac: rbac::Enforcer,
    evictions: Mutex<Vec<EvictionRecord>>,
    /// The fixed resources plus the optional ones enabled on this server.
    pub(crate) served: resources::Served,
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a mutation and wakes the watches if it wrote anything.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let (out, rv, changed) = {
            let mut store = self.store();
            let before = store.rv();
            let out = f(&mut store);
            (out, store.rv(), store.rv() != before)
        };
        if changed {
            self.changes.send_replace(rv);
        }
        out
    }

    pub(crate) fn evictions(&self) -> MutexGuard<'_, Vec<EvictionRecord>> {
        self.evictions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn record_eviction(&self, record: EvictionRecord) {
        self.evictions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
    }
}

/// A handle on one fake API server: its store, its faults and its request log. Cheap to clone;
/// every clone sees the same server.
#[derive(Debug, Clone)]
pub struct FakeApiServer {
    shared: Arc<Shared>,
}

impl Default for FakeApiServer {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeApiServer {
    /// An empty cluster: no objects but the namespaces `default`, `kube-system`, `kube-public`
    /// and `kube-node-lease`.
    pub fn new() -> Self {
        let store = Store::new(store::DEFAULT_RETENTION);
        let rv = store.rv();
        FakeApiServer {
            shared: Arc::new(Shared {
                store: Mutex::new(store),
                faults: faults::FaultState::default(),
                changes: tokio::sync::watch::Sender::new(rv),
                watch_epoch: tokio::sync::watch::Sender::new(0),
                rbac: rbac::Enforcer::default(),
                evictions: Mutex::new(Vec::new()),
                served: resources::Served::default(),
            }),
        }
    }

    /// The server as a `tower::Service<http::Request<B>>` (an axum `Router`), for
    /// `kube::Client::new(fake.service(), "default")`. Needs a Tokio runtime.
    pub fn service(&self) -> axum::Router {
        service::router(self.shared.clone())
    }

    /// Starts a new server on `127.0.0.1` (any free port) and returns its address and handle.
    pub async fn start_http() -> io::Result<(SocketAddr, FakeApiServer)> {
        let fake = FakeApiServer::new();
        let addr = fake.serve_http(0).await?;
        Ok((addr, fake))
    }

    /// Serves this server over plain HTTP on `127.0.0.1:port` (0 picks a free port) from a
    /// spawned task, and returns the bound address.
    pub async fn serve_http(&self, port: u16) -> io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let app = self.service();
        tokio::spawn(async move {
            // An accept error ends the server; tests then see connection errors.
            let _ = axum::serve(listener, app).await;
        });
        Ok(addr)
    }

    /// Fault injection for this server.
    pub fn faults(&self) -> Faults {
        Faults {
            shared: self.shared.clone(),
        }
    }

    /// Every request served so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.faults.log()
    }

    /// Empties the request log and the list of [`FakeApiServer::denied`] requests.
    pub fn clear_requests(&self) {
        self.shared.faults.clear_log();
        self.shared.rbac.clear();
    }

    /// From now on every request through [`FakeApiServer::service`] or HTTP is authorized as
    /// `rbac`'s user before it is served. Authorization comes after the injected latency and
    /// failures of [`FakeApiServer::faults`], as API Priority and Fairness (whose 429s those
    /// model) comes before it in the apiserver's filter chain; a refused request answers 403
    /// Forbidden, is logged with that status and is listed by [`FakeApiServer::denied`]. The
    /// store methods of this handle (`insert`, `update`, `get`, …) are never authorized: they
    /// are the test's own access, like writing to etcd. Replaces any policy enforced before.
    pub fn enforce_rbac(&self, rbac: Rbac) {
        self.shared.rbac.set(Some(rbac));
    }

    /// Serves every request unauthorized again (the default).
    pub fn stop_enforcing_rbac(&self) {
        self.shared.rbac.set(None);
    }

    /// The requests RBAC refused, oldest first (other 403s, such as a PodDisruptionBudget's, are
    /// not listed). Emptied by [`FakeApiServer::clear_requests`].
    pub fn denied(&self) -> Vec<Denial> {
        self.shared.rbac.denials()
    }

    /// Serves Cluster Autoscaler's `autoscaling.x-k8s.io` `capacitybuffers` in `version`
    /// (`v1alpha1`, `v1beta1` or `v1`), as if its CRD were installed: the resource (namespaced,
    /// with a status subresource) and its group in discovery. Until then its paths are 404 and
    /// discovery does not list it. Enabling several versions serves the same objects under each,
    /// without conversion. Requests for it are authorized like any other once RBAC is enforced.
    ///
    /// # Panics
    /// For another version.
    pub fn serve_capacity_buffers(&self, version: &str) {
        let group = resources::CAPACITY_BUFFER_GROUP;
        assert!(
            self.shared.served.enable(group, version, "capacitybuffers"),
            "CapacityBuffers have no version {version:?} (v1alpha1, v1beta1 or v1)"
        );
    }

    /// Every eviction the fake accepted (answered 201), oldest first, with the delete options
    /// it carried. Refused evictions (429, 404, …) are not listed.
    pub fn evictions(&self) -> Vec<EvictionRecord> {
        self.shared.evictions().clone()
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv()
    }

    /// Stores a new object as given, `status` included — the way a test would seed etcd. The
    /// type comes from `apiVersion`/`kind`, a missing namespace is `default`; uid,
    /// creationTimestamp, resourceVersion (and generation for PDBs and DaemonSets) are
    /// assigned. Watches see an ADDED event.
    pub fn insert(&self, obj: Value) -> Result<Value, ApiError> {
        let def = self.def_of(&obj)?;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let ns = if def.namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        self.shared
            .write(|s| s.create(def, &ns, obj, Target::Raw, false))
    }

    /// Inserts every item of a `List` (or a single object), in order.
    pub fn insert_all(&self, list: Value) -> Result<Vec<Value>, ApiError> {
        match list.get("items").and_then(Value::as_array) {
            Some(items) => items.iter().map(|o| self.insert(o.clone())).collect(),
            None => Ok(vec![self.insert(list)?]),
        }
    }

    /// Replaces a stored object as given (status and spec alike). A non-empty
    /// `metadata.resourceVersion` must match the stored one (else 409 Conflict).
    pub fn update(&self, obj: Value) -> Result<Value, ApiError> {
        let def = self.def_of(&obj)?;
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let ns = if def.namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.shared
            .write(|s| s.update(def, &ns, &name, obj, Target::Raw, false))
    }

    /// Reads one object. `resource` is a plural (`"pods"`), qualified plural
    /// (`"poddisruptionbudgets.policy"`) or kind (`"Pod"`); `namespace` is ignored for
    /// cluster-scoped resources.
    ///
    /// # Panics
    /// If the fake does not serve `resource`.
    pub fn get(&self, resource_name: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let def = self.resource(resource_name);
        let ns = if def.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        self.shared.store().get(def, ns, name).cloned()
    }

    /// Lists objects of one resource, in one namespace or (`None`) all.
    ///
    /// # Panics
    /// If the fake does not serve `resource`.
    pub fn list(&self, resource_name: &str, namespace: Option<&str>) -> Vec<Value> {
        let def = self.resource(resource_name);
        let ns = if def.namespaced { namespace } else { None };
        self.shared
            .store()
            .list(def, ns)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Deletes an object (honouring finalizers) and returns its last state.
    ///
    /// # Panics
    /// If the fake does not serve `resource`.
    pub fn delete(
        &self,
        resource_name: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let def = self.resource(resource_name);
        let ns = if def.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        match self
            .shared
            .write(|s| s.delete(def, ns, name, &Preconditions::default(), false))?
        {
            Deleted::Gone(obj) | Deleted::Pending(obj) => Ok(obj),
        }
    }

    fn resource(&self, name: &str) -> &'static resources::ResourceDef {
        self.shared
            .served
            .by_name(name)
            .unwrap_or_else(|| panic!("fake-apiserver does not serve a resource called {name:?}"))
    }

    fn def_of(&self, obj: &Value) -> Result<&'static resources::ResourceDef, ApiError> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        self.shared
            .served
            .by_kind(api_version, kind)
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "fake-apiserver does not serve {api_version}, Kind={kind}"
                ))
            })
    }
}

/// A kubeconfig (YAML) for a fake served at `addr`: plain HTTP, no credentials, namespace
/// `default`. Usable by `kubectl --kubeconfig` and by `kube::Config::from_custom_kubeconfig`.
pub fn kubeconfig(addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://{addr}
users:
- name: fake
  user: {{}}
contexts:
- name: fake
  context:
    cluster: fake
    user: fake
    namespace: default
current-context: fake
preferences: {{}}
"
    )
}
