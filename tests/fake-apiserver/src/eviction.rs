//! `POST /api/v1/namespaces/{ns}/pods/{name}/eviction`, with the apiserver's PDB rules
//! (pkg/registry/core/pod/storage/eviction.go).

use serde_json::{Value, json};
use std::time::SystemTime;

use crate::error::ApiError;
use crate::resources::{self, ResourceDef};
use crate::selector::LabelSelector;
use crate::store::{Preconditions, Store, Target, now};
use crate::{int_at, str_at};

// eviction: more than 2000 unconfirmed disruptions is refused (eviction.go MaxDisruptedPodSize).
const MAX_DISRUPTED_POD_SIZE: usize = 2000;

// eviction: terminal, pending and already-deleting pods are deleted without consulting PDBs
// (eviction.go canIgnorePDB).
fn can_ignore_pdb(pod: &Value) -> bool {
    matches!(
        str_at(pod, "/status/phase"),
        "Succeeded" | "Failed" | "Pending"
    ) || !str_at(pod, "/metadata/deletionTimestamp").is_empty()
}

// eviction: a pod is healthy when its Ready condition is True (pkg/api/pod IsPodReady).
fn is_pod_ready(pod: &Value) -> bool {
    let conditions = pod.pointer("/status/conditions").and_then(Value::as_array);
    conditions
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Sets a condition as meta.SetStatusCondition does: lastTransitionTime changes only with status.
fn set_condition(conditions: &mut Value, mut condition: Value) {
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions
        .as_array_mut()
        .expect("conditions were just made an array");
    match list.iter_mut().find(|c| c["type"] == condition["type"]) {
        Some(existing) => {
            if existing["status"] == condition["status"] {
                condition["lastTransitionTime"] = existing["lastTransitionTime"].clone();
            }
            *existing = condition;
        }
        None => list.push(condition),
    }
}

fn budget_refusal(cause: String, retry_after: u64) -> ApiError {
    let cause = json!({"reason": "DisruptionBudget", "message": cause});
    let message = "Cannot evict pod as it would violate the pod's disruption budget.";
    ApiError::too_many_requests(message, retry_after, vec![cause])
}

/// An eviction the fake accepted (answered 201 Created), for tests to assert on.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionRecord {
    pub namespace: String,
    pub name: String,
    /// `deleteOptions.gracePeriodSeconds` of the Eviction body. `None` when absent, including
    /// when the options came under another key (kube-core 5's `Api::evict` writes
    /// `delete_options`), which the apiserver drops as an unknown field.
    pub grace_period_seconds: Option<i64>,
    /// The body's whole `deleteOptions` (`Null` when absent).
    pub delete_options: Value,
    /// Whether it was a dry run (`?dryRun=All` or `deleteOptions.dryRun`): nothing was changed.
    pub dry_run: bool,
    /// When the fake received it.
    pub at: SystemTime,
}

/// Evicts a pod. `Ok` carries the success `Status` (sent with 201 Created) and the record.
pub(crate) fn evict(
    store: &mut Store,
    ns: &str,
    name: &str,
    body: &[u8],
    dry_run: bool,
) -> Result<(Value, EvictionRecord), ApiError> {
    let pods = resources::pods();
    let eviction: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding Eviction: {e}")))?;
    let api_version = eviction
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("policy/v1");
    let kind = eviction
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Eviction");
    if kind != "Eviction" || !matches!(api_version, "policy/v1" | "policy/v1beta1") {
        let msg = format!("not a Eviction object: {api_version}, Kind={kind}");
        return Err(ApiError::bad_request(msg));
    }
    // eviction: the body must name the pod of the URL (eviction.go Create).
    if str_at(&eviction, "/metadata/name") != name {
        let msg = "name in URL does not match name in Eviction object";
        return Err(ApiError::bad_request(msg));
    }
    let options = eviction
        .get("deleteOptions")
        .cloned()
        .unwrap_or(Value::Null);
    let mut pre = Preconditions::from_delete_options(&options);
    let dry_run = dry_run || options["dryRun"].as_array().is_some_and(|d| !d.is_empty());
    // eviction: unknown fields of the body are dropped when it is decoded, so only
    // deleteOptions (camelCase) counts (k8s.io/api/policy/v1 Eviction).
    let record = EvictionRecord {
        namespace: ns.to_string(),
        name: name.to_string(),
        grace_period_seconds: options.get("gracePeriodSeconds").and_then(Value::as_i64),
        delete_options: options.clone(),
        dry_run,
        at: SystemTime::now(),
    };

    let pod = store
        .get(pods, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(pods, name))?;
    if can_ignore_pdb(&pod) {
        store.delete(pods, ns, name, &pre, dry_run)?;
        return Ok((success(), record));
    }

    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    // eviction: a PDB whose selector is nil or invalid matches no pod; an empty one matches
    // every pod (eviction.go getPodDisruptionBudgets, metav1.LabelSelectorAsSelector).
    let matches = |pdb: &&Value| {
        let selector = pdb
            .pointer("/spec/selector")
            .and_then(LabelSelector::from_object);
        selector.is_some_and(|s| s.matches(labels))
    };
    let mut matching: Vec<Value> = store
        .list(resources::pdbs(), Some(ns))
        .into_iter()
        .filter(matches)
        .cloned()
        .collect();
    // eviction: a pod under several PDBs cannot be evicted — 500 (eviction.go Create).
    if matching.len() > 1 {
        let msg = "This pod has more than one PodDisruptionBudget, \
                   which the eviction subresource does not support.";
        return Err(ApiError::new(500, "", msg));
    }
    if let Some(pdb) = matching.pop() {
        let policy = str_at(&pdb, "/spec/unhealthyPodEvictionPolicy");
        let current = int_at(&pdb, "/status/currentHealthy");
        let desired = int_at(&pdb, "/status/desiredHealthy");
        // eviction: an unready pod is deleted without spending the budget under AlwaysAllow, or
        // under IfHealthyBudget (the default) when the budget is already met; the delete is
        // then pinned to the pod's resourceVersion (eviction.go Create).
        let budget_met =
            matches!(policy, "" | "IfHealthyBudget") && current >= desired && desired > 0;
        if !is_pod_ready(&pod) && (policy == "AlwaysAllow" || budget_met) {
            if pre.resource_version.is_none() {
                pre.resource_version = Some(str_at(&pod, "/metadata/resourceVersion").to_string());
            }
        } else {
            check_and_decrement(store, resources::pdbs(), pdb, name, dry_run)?;
        }
    }
    if !dry_run {
        add_condition_and_delete(store, pods, ns, name, pre)?;
    }
    Ok((success(), record))
}

fn success() -> Value {
    // eviction: success is a Status whose code the create handler fills with 201
    // (k8s.io/apiserver/pkg/endpoints/handlers/create.go).
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

// eviction: the PDB must have observed its generation and allow a disruption; it is then
// decremented with the pod recorded in disruptedPods (eviction.go checkAndDecrement).
fn check_and_decrement(
    store: &mut Store,
    def: &'static ResourceDef,
    mut pdb: Value,
    pod: &str,
    dry_run: bool,
) -> Result<(), ApiError> {
    let name = str_at(&pdb, "/metadata/name").to_string();
    let ns = str_at(&pdb, "/metadata/namespace").to_string();
    if int_at(&pdb, "/status/observedGeneration") < int_at(&pdb, "/metadata/generation") {
        let cause = format!("The disruption budget {name} is still being processed by the server.");
        return Err(budget_refusal(cause, 10));
    }
    let allowed = int_at(&pdb, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(ApiError::forbidden(
            def,
            &name,
            "pdb disruptions allowed is negative",
        ));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object);
    if disrupted.is_some_and(|m| m.len() > MAX_DISRUPTED_POD_SIZE) {
        let why = "DisruptedPods map too big - too many evictions not confirmed by PDB controller";
        return Err(ApiError::forbidden(def, &name, why));
    }
    // eviction: a PDB with disruptionsAllowed 0 blocks with 429 (eviction.go checkAndDecrement).
    if allowed == 0 {
        let (desired, current) = (
            int_at(&pdb, "/status/desiredHealthy"),
            int_at(&pdb, "/status/currentHealthy"),
        );
        let cause = format!(
            "The disruption budget {name} needs {desired} healthy pods and has {current} currently"
        );
        return Err(budget_refusal(cause, 0));
    }
    if dry_run {
        return Ok(());
    }
    let status = &mut pdb["status"];
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1 {
        // eviction: as UpdateDisruptionAllowedCondition (apps/poddisruptionbudget) sets it.
        let condition = json!({"type": "DisruptionAllowed", "status": "False",
            "reason": "InsufficientPods", "message": "", "lastTransitionTime": now(),
            "observedGeneration": status["observedGeneration"]});
        set_condition(&mut status["conditions"], condition);
    }
    if !status["disruptedPods"].is_object() {
        status["disruptedPods"] = json!({});
    }
    status["disruptedPods"][pod] = json!(now());
    store.update(def, &ns, &name, pdb, Target::Status, false)?;
    Ok(())
}

// eviction: before deleting, the pod gets a DisruptionTarget condition
// (eviction.go addConditionAndDeletePod, PodDisruptionConditions).
fn add_condition_and_delete(
    store: &mut Store,
    pods: &'static ResourceDef,
    ns: &str,
    name: &str,
    mut pre: Preconditions,
) -> Result<(), ApiError> {
    let mut pod = store
        .get(pods, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(pods, name))?;
    for (want, field, label) in [
        (&pre.uid, "uid", "UID"),
        (&pre.resource_version, "resourceVersion", "ResourceVersion"),
    ] {
        let have = str_at(&pod, &format!("/metadata/{field}"));
        if let Some(want) = want.as_deref().filter(|w| *w != have) {
            let why = format!(
                "the {label} in the precondition ({want}) does not match the {label} in record \
                 ({have}). The object might have been modified"
            );
            return Err(ApiError::conflict(pods, name, &why));
        }
    }
    let condition = json!({"type": "DisruptionTarget", "status": "True",
        "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
        "lastProbeTime": null, "lastTransitionTime": now()});
    set_condition(&mut pod["status"]["conditions"], condition);
    let updated = store.update(pods, ns, name, pod, Target::Status, false)?;
    if pre.resource_version.is_some() {
        pre.resource_version = Some(str_at(&updated, "/metadata/resourceVersion").to_string());
    }
    store.delete(pods, ns, name, &pre, false)?;
    Ok(())
}
