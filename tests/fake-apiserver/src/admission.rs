//! Admission the fake applies to API writes beyond namespace existence: the Priority plugin
//! (plugin/pkg/admission/priority/admission.go) and the PriorityClass defaulting and validation
//! it relies on. Only requests through the service are admitted; the handle's `insert` and
//! `update` write the store as given, like writing to etcd.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::resources::{self, ResourceDef};
use crate::store::Store;
use crate::str_at;

/// `spec.preemptionPolicy` when neither the pod nor its class says otherwise.
pub(crate) const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";

// scheduling: the classes the apiserver creates at start, and the highest value a user-defined
// class may take (pkg/apis/scheduling/types.go SystemCriticalPriority, HighestUserDefinablePriority;
// pkg/registry/scheduling/rest/storage_scheduling.go AddSystemPriorityClasses).
const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
pub(crate) const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// The built-in PriorityClass objects, as the apiserver stores them.
pub(crate) fn system_priority_classes() -> impl Iterator<Item = Value> {
    SYSTEM_PRIORITY_CLASSES
        .iter()
        .map(|(name, value, description)| {
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
               "metadata": {"name": name}, "value": value, "globalDefault": false,
               "description": description, "preemptionPolicy": PREEMPT_LOWER_PRIORITY})
        })
}

/// Mutating and validating admission of a create through the API. `obj` is changed in place.
pub(crate) fn admit_create(
    store: &Store,
    def: &'static ResourceDef,
    ns: &str,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if !obj.is_object() {
        // The store refuses it with the apiserver's message.
        return Ok(());
    }
    // apiserver: NamespaceLifecycle runs first; a missing namespace is the store's 404.
    if def.namespaced && store.get(resources::namespaces(), "", ns).is_none() {
        return Ok(());
    }
    if def.is(resources::pods()) {
        admit_pod(store, obj)
    } else if def.kind == "ConfigMap" {
        validate_config_map(def, obj)
    } else if def.is(resources::priority_classes()) {
        // scheduling: preemptionPolicy defaults to PreemptLowerPriority
        // (pkg/apis/scheduling/v1/defaults.go SetDefaults_PriorityClass).
        if obj.get("preemptionPolicy").is_none_or(Value::is_null) {
            obj["preemptionPolicy"] = json!(PREEMPT_LOWER_PRIORITY);
        }
        validate_priority_class(store, obj, None)
    } else {
        Ok(())
    }
}

/// Validating admission of an update or patch through the API (the object after the change).
pub(crate) fn validate_update(
    store: &Store,
    def: &'static ResourceDef,
    name: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    if def.is(resources::priority_classes()) && obj.is_object() {
        validate_priority_class(store, obj, Some(name))
    } else if def.kind == "ConfigMap" && obj.is_object() {
        validate_config_map(def, obj)
    } else {
        Ok(())
    }
}

/// core: a ConfigMap's `data` and `binaryData` together hold at most 1 MiB
/// (pkg/apis/core/validation ValidateConfigMap, `core.MaxSecretSize`), and `binaryData` values
/// are base64 on the wire ([]byte in the Go type, so anything else fails to decode: 400).
fn validate_config_map(def: &'static ResourceDef, obj: &Value) -> Result<(), ApiError> {
    use base64::Engine;
    const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;
    let name = admission_name(obj);
    let mut total = 0usize;
    if let Some(data) = obj.get("data").and_then(Value::as_object) {
        total += data
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum::<usize>();
    }
    if let Some(data) = obj.get("binaryData").and_then(Value::as_object) {
        for (k, v) in data {
            let decoded = v
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("binaryData.{k}: illegal base64 data"))
                })?;
            total += k.len() + decoded.len();
        }
    }
    if total > MAX_CONFIG_MAP_BYTES {
        return Err(ApiError::invalid(
            def,
            name,
            &format!("[]: Too long: may not be more than {MAX_CONFIG_MAP_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// The name an admission error reports: the object's name, else its generateName (names are
/// generated after admission), else "Unknown" (k8s.io/apiserver/pkg/admission/errors.go
/// extractResourceName).
fn admission_name(obj: &Value) -> &str {
    let name = str_at(obj, "/metadata/name");
    let generate = str_at(obj, "/metadata/generateName");
    if !name.is_empty() {
        name
    } else if !generate.is_empty() {
        generate
    } else {
        "Unknown"
    }
}

/// The PriorityClass marked globalDefault with the lowest value, if any (admission.go
/// getDefaultPriorityClass: several defaults can exist after a race; the lowest wins).
fn default_priority_class(store: &Store) -> Option<&Value> {
    store
        .list(resources::priority_classes(), None)
        .into_iter()
        .filter(|pc| pc.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|pc| pc.get("value").and_then(Value::as_i64).unwrap_or(0))
}

fn class_policy(pc: &Value) -> String {
    match pc.get("preemptionPolicy").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => PREEMPT_LOWER_PRIORITY.to_string(),
    }
}

// priority: on create, the pod's priority and preemptionPolicy come from its PriorityClass (or
// the global default class, or 0 and PreemptLowerPriority); a class that does not exist, or a
// priority or policy in the pod that disagrees with the class, is 403 Forbidden
// (plugin/pkg/admission/priority/admission.go admitPod).
fn admit_pod(store: &Store, pod: &mut Value) -> Result<(), ApiError> {
    let pods = resources::pods();
    let name = admission_name(pod).to_string();
    if !pod.get("spec").is_some_and(Value::is_object) {
        pod["spec"] = json!({});
    }
    let class_name = str_at(pod, "/spec/priorityClassName").to_string();
    let (class_name, priority, policy) = if class_name.is_empty() {
        match default_priority_class(store) {
            Some(pc) => (
                str_at(pc, "/metadata/name").to_string(),
                pc.get("value").and_then(Value::as_i64).unwrap_or(0),
                class_policy(pc),
            ),
            // scheduling: DefaultPriorityWhenNoDefaultClassExists is 0.
            None => (String::new(), 0, PREEMPT_LOWER_PRIORITY.to_string()),
        }
    } else {
        let Some(pc) = store.get(resources::priority_classes(), "", &class_name) else {
            let why = format!("no PriorityClass with name {class_name} was found");
            return Err(ApiError::forbidden(pods, &name, &why));
        };
        (
            class_name,
            pc.get("value").and_then(Value::as_i64).unwrap_or(0),
            class_policy(pc),
        )
    };
    let spec = &mut pod["spec"];
    if let Some(given) = spec.get("priority").filter(|p| !p.is_null())
        && given.as_i64() != Some(priority)
    {
        let why = format!(
            "the integer value of priority ({given}) must not be provided in pod spec; \
             priority admission controller computed {priority} from the given PriorityClass name"
        );
        return Err(ApiError::forbidden(pods, &name, &why));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        let why = format!(
            "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; \
             priority admission controller computed {policy} from the given PriorityClass name"
        );
        return Err(ApiError::forbidden(pods, &name, &why));
    }
    if !class_name.is_empty() {
        spec["priorityClassName"] = json!(class_name);
    }
    spec["priority"] = json!(priority);
    spec["preemptionPolicy"] = json!(policy);
    Ok(())
}

// priority: a value above HighestUserDefinablePriority is invalid for a class not named
// `system-…` (pkg/apis/scheduling/validation/validation.go ValidatePriorityClass); at most one
// class may be globalDefault — creating a second, or marking another one, is 403 Forbidden
// (admission.go validatePriorityClass).
fn validate_priority_class(
    store: &Store,
    pc: &Value,
    updating: Option<&str>,
) -> Result<(), ApiError> {
    let def = resources::priority_classes();
    let name = updating.unwrap_or_else(|| admission_name(pc));
    let value = pc.get("value").and_then(Value::as_i64).unwrap_or(0);
    if !name.starts_with("system-") && value > HIGHEST_USER_DEFINABLE_PRIORITY {
        let why = format!(
            "value: Forbidden: maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
        );
        return Err(ApiError::invalid(def, name, &why));
    }
    if pc.get("globalDefault").and_then(Value::as_bool) == Some(true)
        && let Some(existing) = default_priority_class(store)
    {
        let existing = str_at(existing, "/metadata/name");
        if updating.is_none_or(|n| n != existing) {
            let why = format!(
                "PriorityClass {existing} is already marked as default. Only one default can exist"
            );
            return Err(ApiError::forbidden(def, name, &why));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{DEFAULT_RETENTION, Target};

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn pods_take_priority_and_policy_from_their_class() {
        let mut store = Store::new(DEFAULT_RETENTION);
        let pods = resources::pods();
        let mut p = pod(json!({"priorityClassName": "system-node-critical"}));
        admit_create(&store, pods, "kube-system", &mut p).unwrap();
        assert_eq!(p["spec"]["priority"], 2_000_001_000);
        assert_eq!(p["spec"]["preemptionPolicy"], PREEMPT_LOWER_PRIORITY);

        let mut p = pod(json!({"priorityClassName": "nope"}));
        let err = admit_create(&store, pods, "default", &mut p).unwrap_err();
        assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            err.message,
            "pods \"p\" is forbidden: no PriorityClass with name nope was found"
        );
        // A missing namespace is left to the store's 404.
        assert!(admit_create(&store, pods, "nowhere", &mut p).is_ok());

        let class = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                           "metadata": {"name": "low"}, "value": -5, "globalDefault": true,
                           "preemptionPolicy": "Never"});
        let def = resources::priority_classes();
        store.create(def, "", class, Target::Raw, false).unwrap();
        let mut p = pod(json!({}));
        admit_create(&store, pods, "default", &mut p).unwrap();
        assert_eq!(
            (
                &p["spec"]["priorityClassName"],
                &p["spec"]["priority"],
                &p["spec"]["preemptionPolicy"]
            ),
            (&json!("low"), &json!(-5), &json!("Never"))
        );
        let mut p = pod(json!({"priority": 0}));
        let err = admit_create(&store, pods, "default", &mut p).unwrap_err();
        assert!(
            err.message
                .contains("the integer value of priority (0) must not be provided")
        );

        let mut second = json!({"metadata": {"name": "also"}, "value": 1, "globalDefault": true});
        let err = admit_create(&store, def, "", &mut second).unwrap_err();
        assert_eq!(err.code, 403);
        assert!(
            validate_update(
                &store,
                def,
                "low",
                &json!({"value": 1, "globalDefault": true})
            )
            .is_ok()
        );
    }
}
