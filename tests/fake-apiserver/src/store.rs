//! The object store: one global resourceVersion counter, objects as JSON, and a bounded change
//! history that watches read from.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::error::ApiError;
use crate::resources::{self, ResourceDef};
use crate::str_at;

/// Changes kept for watches unless a test sets another retention.
pub(crate) const DEFAULT_RETENTION: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed write, as a watch will see it.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub rv: u64,
    pub def: &'static ResourceDef,
    pub kind: ChangeKind,
    /// The object after the change (for a deletion: its last state, carrying the deletion's RV).
    pub object: Value,
    pub previous: Option<Value>,
}

/// Which part of an object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The object itself: `status` is kept from the stored object when there is a status
    /// subresource.
    Main,
    /// The `status` subresource: only `status` is taken from the request.
    Status,
    /// Direct store access from tests: the whole object is written as given (as if to etcd).
    Raw,
}

/// `DeleteOptions.preconditions`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<String>,
}

impl Preconditions {
    pub(crate) fn from_delete_options(opts: &Value) -> Self {
        let s = |k: &str| {
            opts.pointer(&format!("/preconditions/{k}"))
                .and_then(Value::as_str)
        };
        Preconditions {
            uid: s("uid").map(String::from),
            resource_version: s("resourceVersion").map(String::from),
        }
    }
}

/// What a DELETE did.
#[derive(Debug)]
pub(crate) enum Deleted {
    /// The object is gone.
    Gone(Value),
    /// The object has finalizers: it now carries a deletionTimestamp and stays until they clear.
    Pending(Value),
}

type Key = (String, String);

#[derive(Debug)]
pub(crate) struct Store {
    objects: HashMap<(&'static str, &'static str), BTreeMap<Key, Value>>,
    rv: u64,
    history: VecDeque<Change>,
    retention: usize,
    /// Highest RV dropped from the history; a watch from an older RV has missed changes.
    compacted_rv: u64,
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn new_uid() -> String {
    let b = fastrand::u128(..) & !(0xf << 76) & !(0x3 << 62) | (0x4 << 76) | (0x2 << 62);
    let h = format!("{b:032x}");
    [&h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]].join("-")
}

// apiserver: generateName appends 5 characters from this alphabet
// (k8s.io/apiserver/pkg/storage/names/generate.go, util/rand.String).
fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, key: &str) -> &'a str {
    str_at(obj, &format!("/metadata/{key}"))
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// Rejects a body whose apiVersion/kind name another type.
fn check_type(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request is not a JSON object",
        ));
    }
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!api_version.is_empty() && api_version != def.api_version())
        || (!kind.is_empty() && kind != def.kind)
    {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): {api_version}, Kind={kind}",
            def.kind
        )));
    }
    Ok(())
}

// apiserver: objects round-trip through Go structs, so non-pointer struct fields such as
// `spec` and `status` are always present (k8s.io/api/core/v1/types.go).
fn fill_struct_fields(def: &ResourceDef, obj: &mut Value) {
    if let Some(o) = obj.as_object_mut() {
        for field in def.struct_fields {
            if !o.get(*field).is_some_and(Value::is_object) {
                o.insert((*field).to_string(), json!({}));
            }
        }
    }
}

// apiserver: strategies reset status on create
// (pkg/registry/core/pod/strategy.go PrepareForCreate: status = {phase: Pending};
// pkg/registry/policy/poddisruptionbudget/strategy.go: status cleared).
fn reset_status_on_create(def: &ResourceDef, obj: &mut Value) {
    match (def.group, def.plural) {
        ("", "pods") => obj["status"] = json!({"phase": "Pending"}),
        ("policy", "poddisruptionbudgets") => {
            obj["status"] = json!({
                "disruptionsAllowed": 0, "currentHealthy": 0,
                "desiredHealthy": 0, "expectedPods": 0,
            })
        }
        // apiextensions: a custom resource with a status subresource drops status on create
        // (k8s.io/apiextensions-apiserver/pkg/registry/customresource/strategy.go PrepareForCreate).
        (resources::CAPACITY_BUFFER_GROUP, "capacitybuffers") => {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        _ => {}
    }
}

impl Store {
    pub(crate) fn new(retention: usize) -> Self {
        let mut store = Store {
            objects: HashMap::new(),
            rv: 0,
            history: VecDeque::new(),
            retention,
            compacted_rv: 0,
        };
        // A fresh cluster has these namespaces; the apiserver creates them at start.
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"metadata": {"name": ns}, "spec": {"finalizers": ["kubernetes"]},
                             "status": {"phase": "Active"}});
            store
                .create(resources::namespaces(), "", obj, Target::Raw, false)
                .expect("built-in namespaces are valid and unique");
        }
        for pc in crate::admission::system_priority_classes() {
            store
                .create(resources::priority_classes(), "", pc, Target::Raw, false)
                .expect("built-in PriorityClasses are valid and unique");
        }
        store
    }

    pub(crate) fn rv(&self) -> u64 {
        self.rv
    }

    pub(crate) fn compacted_rv(&self) -> u64 {
        self.compacted_rv
    }

    pub(crate) fn set_retention(&mut self, retention: usize) {
        self.retention = retention;
        self.trim();
    }

    fn trim(&mut self) {
        while self.history.len() > self.retention {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
    }

    /// Changes with an RV above `after`, or `Err(compacted_rv)` when some were already dropped.
    pub(crate) fn changes_after(&self, after: u64) -> Result<Vec<Change>, u64> {
        // watch: a too-old resourceVersion yields 410 Gone / reason Expired
        // (k8s.io/apiserver/pkg/storage/cacher/watch_cache.go, etcd3 compaction).
        if after < self.compacted_rv {
            return Err(self.compacted_rv);
        }
        Ok(self
            .history
            .iter()
            .filter(|c| c.rv > after)
            .cloned()
            .collect())
    }

    pub(crate) fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(def.group, def.plural))
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
    }

    /// Objects in key order (namespace, name), as etcd returns them; `ns = None` is all.
    pub(crate) fn list(&self, def: &ResourceDef, ns: Option<&str>) -> Vec<&Value> {
        self.objects
            .get(&(def.group, def.plural))
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|ns| ns == n))
                    .map(|(_, v)| v)
            })
            .into_iter()
            .flatten()
            .collect()
    }

    fn commit(
        &mut self,
        def: &'static ResourceDef,
        kind: ChangeKind,
        mut obj: Value,
        previous: Option<Value>,
    ) -> Value {
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let key = (
            meta_str(&obj, "namespace").to_string(),
            meta_str(&obj, "name").to_string(),
        );
        let objects = self.objects.entry((def.group, def.plural)).or_default();
        if kind == ChangeKind::Deleted {
            objects.remove(&key);
        } else {
            objects.insert(key, obj.clone());
        }
        self.history.push_back(Change {
            rv: self.rv,
            def,
            kind,
            object: obj.clone(),
            previous,
        });
        self.trim();
        obj
    }

    pub(crate) fn create(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        mut obj: Value,
        target: Target,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        check_type(def, &obj)?;
        obj["apiVersion"] = json!(def.api_version());
        obj["kind"] = json!(def.kind);
        let m = meta_mut(&mut obj);
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let prefix = m.get("generateName").and_then(Value::as_str).unwrap_or("");
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    def,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            name = format!("{prefix}{}", name_suffix());
            m.insert("name".into(), json!(name));
        }
        if def.namespaced {
            let body_ns = m.get("namespace").and_then(Value::as_str).unwrap_or("");
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        // apiserver: system fields are set by the server, whatever the client sent
        // (k8s.io/apiserver/pkg/registry/rest/create.go FillObjectMetaSystemFields).
        m.insert("uid".into(), json!(new_uid()));
        m.insert("creationTimestamp".into(), json!(now()));
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            m.remove(field);
        }
        if def.tracks_generation {
            m.insert("generation".into(), json!(1));
        }
        if target != Target::Raw {
            reset_status_on_create(def, &mut obj);
        }
        fill_struct_fields(def, &mut obj);
        // apiserver: NamespaceLifecycle admission rejects objects in a missing namespace
        // (plugin/pkg/admission/namespace/lifecycle/admission.go).
        if def.namespaced && self.get(resources::namespaces(), "", ns).is_none() {
            return Err(ApiError::not_found(resources::namespaces(), ns));
        }
        if self.get(def, ns, &name).is_some() {
            return Err(ApiError::already_exists(def, &name));
        }
        if dry_run {
            return Ok(obj);
        }
        Ok(self.commit(def, ChangeKind::Added, obj, None))
    }

    pub(crate) fn update(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        name: &str,
        mut new: Value,
        target: Target,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let old = self
            .get(def, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        check_type(def, &new)?;
        let body_name = meta_str(&new, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta_str(&new, "namespace");
        if def.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        // apiserver: optimistic concurrency — a write whose resourceVersion differs from the
        // stored one is 409 Conflict; an empty one is unconditional
        // (k8s.io/apiserver/pkg/registry/generic/registry/store.go Update, AllowUnconditionalUpdate).
        let rv = meta_str(&new, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(
                def,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let uid = meta_str(&new, "uid");
        if !uid.is_empty() && uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict(
                def,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if def.has_status() {
            match target {
                // apiserver: PrepareForUpdate of the main resource keeps the stored status
                // (e.g. pkg/registry/core/node/strategy.go).
                Target::Main => match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().map(|o| o.remove("status"));
                    }
                },
                // apiserver: the status strategy takes only .status from the request and resets
                // metadata (metav1.ResetObjectMetaForStatus) and spec to the stored object.
                Target::Status => {
                    let status = new.get("status").cloned().unwrap_or(Value::Null);
                    new = old.clone();
                    new["status"] = status;
                }
                Target::Raw => {}
            }
        }
        new["apiVersion"] = json!(def.api_version());
        new["kind"] = json!(def.kind);
        fill_struct_fields(def, &mut new);
        let old_meta = meta(&old).cloned().unwrap_or_default();
        let m = meta_mut(&mut new);
        // apiserver: immutable system metadata is carried over from the stored object
        // (k8s.io/apiserver/pkg/registry/rest/update.go).
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(field) {
                Some(v) => m.insert(field.into(), v.clone()),
                None => m.remove(field),
            };
        }
        // apiserver: generation bumps when spec changes (e.g. pkg/registry/policy/
        // poddisruptionbudget/strategy.go PrepareForUpdate).
        if def.tracks_generation && new.get("spec") != old.get("spec") {
            let generation = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        // apiserver: an update that changes nothing is not written and keeps its
        // resourceVersion (k8s.io/apiserver/pkg/storage/etcd3/store.go GuaranteedUpdate).
        if new == old || dry_run {
            return Ok(new);
        }
        // apiserver: an object being deleted goes once its last finalizer is removed
        // (k8s.io/apiserver/pkg/registry/generic/registry/store.go deleteWithoutFinalizers).
        if old_meta.contains_key("deletionTimestamp") && !has_finalizers(&new) {
            return Ok(self.commit(def, ChangeKind::Deleted, new, Some(old)));
        }
        Ok(self.commit(def, ChangeKind::Modified, new, Some(old)))
    }

    pub(crate) fn delete(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        name: &str,
        pre: &Preconditions,
        dry_run: bool,
    ) -> Result<Deleted, ApiError> {
        let old = self
            .get(def, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(def, name))?;
        // apiserver: DeleteOptions.preconditions are checked against the stored object
        // (k8s.io/apiserver/pkg/storage/etcd3/store.go checkPreconditions).
        for (want, field, label) in [
            (&pre.uid, "uid", "UID"),
            (&pre.resource_version, "resourceVersion", "ResourceVersion"),
        ] {
            if let Some(want) = want
                && want != meta_str(&old, field)
            {
                let why = format!(
                    "Precondition failed: {label} in precondition: {want}, {label} in object meta: {}",
                    meta_str(&old, field)
                );
                return Err(ApiError::conflict(def, name, &why));
            }
        }
        if has_finalizers(&old) {
            // apiserver: with finalizers, delete only sets deletionTimestamp (store.go
            // updateForGracefulDeletionAndFinalizers).
            if meta(&old).is_some_and(|m| m.contains_key("deletionTimestamp")) || dry_run {
                return Ok(Deleted::Pending(old));
            }
            let mut marked = old.clone();
            let m = meta_mut(&mut marked);
            m.insert("deletionTimestamp".into(), json!(now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            return Ok(Deleted::Pending(self.commit(
                def,
                ChangeKind::Modified,
                marked,
                Some(old),
            )));
        }
        if dry_run {
            return Ok(Deleted::Gone(old));
        }
        let gone = self.commit(def, ChangeKind::Deleted, old.clone(), Some(old));
        Ok(Deleted::Gone(gone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    }

    #[test]
    fn history_is_bounded_and_reports_compaction() {
        let nodes = resources::by_name("nodes").unwrap();
        let mut s = Store::new(2);
        let start = s.rv();
        for n in ["a", "b", "c"] {
            s.create(nodes, "", node(n), Target::Main, false).unwrap();
        }
        assert_eq!(s.changes_after(start).err(), Some(start + 1));
        assert_eq!(s.changes_after(start + 1).unwrap().len(), 2);
    }

    #[test]
    fn finalizers_defer_deletion_until_cleared() {
        let nodes = resources::by_name("nodes").unwrap();
        let mut s = Store::new(10);
        let mut n = node("a");
        n["metadata"]["finalizers"] = json!(["x/y"]);
        s.create(nodes, "", n, Target::Main, false).unwrap();
        let pending = s
            .delete(nodes, "", "a", &Preconditions::default(), false)
            .unwrap();
        let Deleted::Pending(mut obj) = pending else {
            panic!("expected pending")
        };
        assert!(obj["metadata"]["deletionTimestamp"].is_string());
        obj["metadata"]["finalizers"] = json!([]);
        s.update(nodes, "", "a", obj, Target::Main, false).unwrap();
        assert!(s.get(nodes, "", "a").is_none());
    }
}
