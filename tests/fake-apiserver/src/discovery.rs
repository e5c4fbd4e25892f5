//! Legacy (unaggregated) discovery documents: /version, /api, /apis, and resource lists.

use serde_json::{Value, json};

use crate::resources::Served;

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

pub(crate) fn api_group_list(served: &Served) -> Value {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (g, v) in served.group_versions() {
        if g.is_empty() {
            continue;
        }
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, versions)) => versions.push(v),
            None => groups.push((g, vec![v])),
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, mut versions)| {
            // apiserver: a group's versions are listed in priority order, the first preferred;
            // for a CRD that is the kube-aware version order (GA, then beta, then alpha, higher
            // numbers first) (k8s.io/apimachinery/pkg/version/helpers.go CompareKubeAwareVersionStrings).
            versions.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
            let list: Vec<Value> = versions
                .iter()
                .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                .collect();
            let preferred = list[0].clone();
            json!({"name": g, "versions": list, "preferredVersion": preferred})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Orders `v1` > `v1beta2` > `v1beta1` > `v1alpha1`; anything else ranks lowest.
fn version_rank(version: &str) -> (u8, u32, u32) {
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Ok(major) = rest[..digits].parse::<u32>() else {
        return (0, 0, 0);
    };
    let tail = &rest[digits..];
    let (stability, minor) = if tail.is_empty() {
        (3, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (2, n.parse().unwrap_or(0))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (1, n.parse().unwrap_or(0))
    } else {
        return (0, 0, 0);
    };
    (stability, major, minor)
}

// Only the verbs the fake implements are advertised (no deletecollection).
const VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// The `APIResourceList` for one group version, or `None` if the fake does not serve it.
pub(crate) fn resource_list(served: &Served, group: &str, version: &str) -> Option<Value> {
    if !served.group_versions().contains(&(group, version)) {
        return None;
    }
    let mut resources = Vec::new();
    for r in served
        .all()
        .into_iter()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rank_as_kube_aware_order() {
        let mut v = vec!["v1alpha1", "v1", "v1beta1", "v2beta1", "v1beta2"];
        v.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
        assert_eq!(v, ["v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1"]);
    }
}
