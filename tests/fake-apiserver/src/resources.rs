//! The fixed table of resources this fake serves, and nothing else.

/// One REST resource: its group/version/kind, URL name and scope.
#[derive(Debug)]
pub(crate) struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// Subresources served under `{plural}/{name}/{sub}`.
    pub subresources: &'static [&'static str],
    /// Whether `metadata.generation` is maintained (1 on create, +1 when `spec` changes).
    pub tracks_generation: bool,
    /// Field selector labels the apiserver accepts for this resource.
    pub field_labels: &'static [&'static str],
    /// Top-level fields that are non-pointer structs in the Go type, so the apiserver always
    /// serialises them (as `{}` when empty).
    pub struct_fields: &'static [&'static str],
}

const META_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

// apiserver: the supported field labels per resource come from each registry's GetAttrs /
// AddFieldLabelConversionFunc (pkg/apis/core/v1/conversion.go).
const POD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const NODE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];

pub(crate) static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        subresources: &["status"],
        tracks_generation: false,
        field_labels: &["metadata.name", "status.phase"],
        struct_fields: &["spec", "status"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        subresources: &["status"],
        tracks_generation: false,
        field_labels: NODE_FIELDS,
        struct_fields: &["spec", "status"],
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short_names: &["po"],
        subresources: &["status", "eviction"],
        tracks_generation: false,
        field_labels: POD_FIELDS,
        struct_fields: &["spec", "status"],
    },
    ResourceDef {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        kind: "PodDisruptionBudget",
        namespaced: true,
        short_names: &["pdb"],
        subresources: &["status"],
        tracks_generation: true,
        field_labels: META_FIELDS,
        struct_fields: &["spec", "status"],
    },
    ResourceDef {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        subresources: &[],
        tracks_generation: false,
        field_labels: META_FIELDS,
        struct_fields: &[],
    },
    ResourceDef {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        tracks_generation: false,
        field_labels: META_FIELDS,
        struct_fields: &["spec"],
    },
    // kubectl drain --ignore-daemonsets GETs the DaemonSet that controls a pod.
    ResourceDef {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        short_names: &["ds"],
        subresources: &["status"],
        tracks_generation: true,
        field_labels: META_FIELDS,
        struct_fields: &["spec", "status"],
    },
];

impl ResourceDef {
    /// `v1` for the core group, `group/version` otherwise.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods`, or `poddisruptionbudgets.policy` — the form used in error messages.
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub(crate) fn has_status(&self) -> bool {
        self.subresources.contains(&"status")
    }

    pub(crate) fn is(&self, other: &ResourceDef) -> bool {
        self.group == other.group && self.plural == other.plural
    }
}

pub(crate) fn by_path(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub(crate) fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// Looks a resource up by plural, qualified plural (`poddisruptionbudgets.policy`) or kind.
pub(crate) fn by_name(name: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.plural == name || r.qualified() == name || r.kind == name)
}

pub(crate) fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

pub(crate) fn pods() -> &'static ResourceDef {
    by_path("", "v1", "pods").expect("pods are in the resource table")
}

pub(crate) fn namespaces() -> &'static ResourceDef {
    by_path("", "v1", "namespaces").expect("namespaces are in the resource table")
}

pub(crate) fn pdbs() -> &'static ResourceDef {
    by_path("policy", "v1", "poddisruptionbudgets").expect("PDBs are in the resource table")
}
