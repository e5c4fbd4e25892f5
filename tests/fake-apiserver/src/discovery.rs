//! Legacy (unaggregated) discovery documents: /version, /api, /apis, and resource lists.

use serde_json::{Value, json};

use crate::resources::{RESOURCES, group_versions};

/// The Kubernetes version the fake reports.
pub(crate) const GIT_VERSION: &str = "v1.32.0+fake";

pub(crate) fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23.0", "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub(crate) fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

pub(crate) fn api_group_list() -> Value {
    let groups: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

// Only the verbs the fake implements are advertised (no deletecollection).
const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// The `APIResourceList` for one group version, or `None` if the fake does not serve it.
pub(crate) fn resource_list(group: &str, version: &str) -> Option<Value> {
    if !group_versions().contains(&(group, version)) {
        return None;
    }
    let mut resources = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": VERBS, "shortNames": r.short_names,
        }));
        for sub in r.subresources {
            let entry = match *sub {
                // kubectl drain: CheckEvictionSupport looks for pods/eviction with kind Eviction
                // and a group/version (k8s.io/kubectl/pkg/drain/drain.go).
                "eviction" => json!({
                    "name": format!("{}/eviction", r.plural), "singularName": "",
                    "namespaced": r.namespaced, "group": "policy", "version": "v1",
                    "kind": "Eviction", "verbs": ["create"],
                }),
                _ => json!({
                    "name": format!("{}/{sub}", r.plural), "singularName": "",
                    "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"],
                }),
            };
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList", "apiVersion": "v1",
        "groupVersion": group_version, "resources": resources,
    }))
}
