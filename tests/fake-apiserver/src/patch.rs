//! PATCH bodies: JSON patch (RFC 6902), merge patch (RFC 7386) and the subset of strategic merge
//! patch that kubectl's cordon/taint/drain and typical controllers send.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::resources::ResourceDef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    Strategic,
}

// apiserver: the patch type is chosen by Content-Type
// (k8s.io/apiserver/pkg/endpoints/handlers/patch.go); anything else is 415.
pub(crate) fn patch_type(content_type: &str) -> Result<PatchType, ApiError> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    match essence {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            Err(ApiError::unsupported_media_type(
                "fake-apiserver does not implement server-side apply (application/apply-patch+yaml); \
                 use a merge, JSON or strategic merge patch",
            ))
        }
        other => Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({other:?}) - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, \
             application/strategic-merge-patch+json"
        ))),
    }
}

/// Applies `body` to `current`, returning the patched object.
pub(crate) fn apply(
    def: &ResourceDef,
    name: &str,
    kind: PatchType,
    current: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut doc = current.clone();
    match kind {
        PatchType::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            // apiserver: a JSON patch that cannot be applied is 422 Invalid (handlers/patch.go).
            json_patch::patch(&mut doc, &ops)
                .map_err(|e| ApiError::invalid(def, name, &format!("patch: {e}")))?;
        }
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut doc, &patch);
        }
        PatchType::Strategic => {
            let Value::Object(p) = &patch else {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            };
            strategic_merge_map(&mut doc, p, "")
                .map_err(|why| ApiError::invalid(def, name, &why))?;
        }
    }
    if !doc.is_object() {
        return Err(ApiError::invalid(
            def,
            name,
            "the patched document is not an object",
        ));
    }
    Ok(doc)
}

/// Lists that upstream Go types tag `patchStrategy:"merge"`; every other list is atomic and a
/// patch replaces it. `None` marks a list of primitives merged as a set.
const MERGE_LISTS: &[(&str, Option<&str>)] = &[
    ("metadata.finalizers", None),
    ("metadata.ownerReferences", Some("uid")),
    ("spec.containers", Some("name")),
    ("spec.initContainers", Some("name")),
    ("spec.volumes", Some("name")),
    ("status.conditions", Some("type")),
    ("status.addresses", Some("type")),
];

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

// strategic merge: maps merge recursively, null deletes a key, `$patch: replace|delete` on a
// map, keyed lists merge by their merge key, other lists replace
// (k8s.io/apimachinery/pkg/util/strategicpatch/patch.go mergeMap).
fn strategic_merge_map(
    target: &mut Value,
    patch: &Map<String, Value>,
    path: &str,
) -> Result<(), String> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            *target = Value::Object(replaced);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => return Err(format!("unknown patch type {other:?} at {path:?}")),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target
        .as_object_mut()
        .expect("target was just made an object");
    for (key, value) in patch {
        if key.starts_with("$setElementOrder/") {
            // Ordering directive only: elements keep their stored order, new ones go last.
            continue;
        }
        if key.starts_with('$') {
            return Err(format!(
                "fake-apiserver does not support the strategic merge directive {key:?} (at {path:?})"
            ));
        }
        let here = join(path, key);
        match value {
            Value::Null => {
                t.remove(key);
            }
            Value::Object(p) => {
                let slot = t.entry(key.clone()).or_insert(Value::Null);
                strategic_merge_map(slot, p, &here)?;
                if slot.is_null() {
                    t.remove(key);
                }
            }
            Value::Array(items) => match MERGE_LISTS.iter().find(|(p, _)| *p == here) {
                Some((_, merge_key)) => {
                    let slot = t
                        .entry(key.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    merge_list(slot, items, *merge_key, &here)?;
                }
                None => {
                    t.insert(key.clone(), value.clone());
                }
            },
            other => {
                t.insert(key.clone(), other.clone());
            }
        }
    }
    Ok(())
}

fn merge_list(
    target: &mut Value,
    patch: &[Value],
    merge_key: Option<&str>,
    path: &str,
) -> Result<(), String> {
    if !target.is_array() {
        *target = Value::Array(Vec::new());
    }
    let list = target
        .as_array_mut()
        .expect("target was just made an array");
    for item in patch {
        match merge_key {
            None => {
                if !list.contains(item) {
                    list.push(item.clone());
                }
            }
            Some(k) => {
                let Some(id) = item.get(k) else {
                    return Err(format!("{path}: element is missing its merge key {k:?}"));
                };
                let pos = list.iter().position(|e| e.get(k) == Some(id));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        list.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        let p = item
                            .as_object()
                            .ok_or_else(|| format!("{path}: not an object"))?;
                        strategic_merge_map(&mut list[i], p, path)?;
                    }
                    (None, false) => list.push(item.clone()),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources;
    use serde_json::json;

    fn smp(current: Value, patch: Value) -> Result<Value, ApiError> {
        let nodes = resources::by_name("nodes").unwrap();
        apply(
            nodes,
            "n",
            PatchType::Strategic,
            &current,
            patch.to_string().as_bytes(),
        )
    }

    #[test]
    fn strategic_maps_merge_lists_replace_null_deletes() {
        let node = json!({"spec": {"unschedulable": true, "taints": [{"key": "a", "effect": "NoSchedule"}]},
                          "metadata": {"labels": {"x": "1"}}});
        let out = smp(
            node,
            json!({"spec": {"unschedulable": null, "taints": [{"key": "b", "effect": "NoExecute"}]},
                                   "metadata": {"labels": {"y": "2"}}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"],
            json!({"taints": [{"key": "b", "effect": "NoExecute"}]})
        );
        assert_eq!(out["metadata"]["labels"], json!({"x": "1", "y": "2"}));
    }

    #[test]
    fn strategic_keyed_lists_merge_by_key() {
        let node = json!({"status": {"conditions": [{"type": "Ready", "status": "True"},
                                                    {"type": "Gone", "status": "True"}]}});
        let out = smp(
            node,
            json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}, {"type": "Spot", "status": "True"},
            {"type": "Gone", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "False"},
                                                       {"type": "Spot", "status": "True"}])
        );
    }

    #[test]
    fn unsupported_directives_are_rejected() {
        let err = smp(json!({}), json!({"spec": {"$retainKeys": ["a"]}})).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(patch_type("application/apply-patch+yaml").is_err());
    }
}
