//! The fixed table of resources this fake serves, the optional ones a test may enable (custom
//! resources, as if their CRD were installed), and nothing else.

use std::sync::{PoisonError, RwLock};

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
    // The router keeps its pool statistics in one.
    ResourceDef {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short_names: &["cm"],
        subresources: &[],
        tracks_generation: false,
        field_labels: META_FIELDS,
        struct_fields: &[],
    },
    // Cluster Autoscaler's CapacityBuffers name a PodTemplate as the shape of their chunks.
    ResourceDef {
        group: "",
        version: "v1",
        plural: "podtemplates",
        singular: "podtemplate",
        kind: "PodTemplate",
        namespaced: true,
        short_names: &[],
        subresources: &[],
        tracks_generation: false,
        field_labels: META_FIELDS,
        struct_fields: &["template"],
    },
    // Priority admission resolves a pod's priorityClassName against these (see `admission`).
    ResourceDef {
        group: "scheduling.k8s.io",
        version: "v1",
        plural: "priorityclasses",
        singular: "priorityclass",
        kind: "PriorityClass",
        namespaced: false,
        short_names: &["pc"],
        subresources: &[],
        tracks_generation: false,
        field_labels: META_FIELDS,
        struct_fields: &[],
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

/// Cluster Autoscaler's CapacityBuffer, one entry per version its CRD has had
/// (kubernetes/autoscaler cluster-autoscaler/apis/config/crd/autoscaling.x-k8s.io_capacitybuffers.yaml:
/// namespaced, short name `cb`, a status subresource; cluster-autoscaler/apis/capacitybuffer/
/// autoscaling.x-k8s.io/{v1alpha1,v1beta1,v1}/types.go). Served only once a test enables a
/// version with [`crate::FakeApiServer::serve_capacity_buffers`].
const fn capacity_buffers(version: &'static str) -> ResourceDef {
    ResourceDef {
        group: CAPACITY_BUFFER_GROUP,
        version,
        plural: "capacitybuffers",
        singular: "capacitybuffer",
        kind: "CapacityBuffer",
        namespaced: true,
        short_names: &["cb"],
        subresources: &["status"],
        // apiextensions: custom resources always maintain metadata.generation.
        tracks_generation: true,
        field_labels: META_FIELDS,
        struct_fields: &[],
    }
}

pub(crate) const CAPACITY_BUFFER_GROUP: &str = "autoscaling.x-k8s.io";

/// Resources served only when a test enables them, as if their CRD had been installed.
pub(crate) static OPTIONAL: &[ResourceDef] = &[
    capacity_buffers("v1alpha1"),
    capacity_buffers("v1beta1"),
    capacity_buffers("v1"),
];

/// What one server serves: the fixed table plus the optional resources enabled on it. Lookups
/// go through this so a resource that is not enabled is a 404 like any unknown path.
#[derive(Debug, Default)]
pub(crate) struct Served {
    enabled: RwLock<Vec<&'static ResourceDef>>,
}

impl Served {
    /// Enables one optional resource; `false` if `OPTIONAL` has no such group/version/plural.
    pub(crate) fn enable(&self, group: &str, version: &str, plural: &str) -> bool {
        let Some(def) = OPTIONAL
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
        else {
            return false;
        };
        let mut enabled = self.enabled.write().unwrap_or_else(PoisonError::into_inner);
        if !enabled.iter().any(|d| std::ptr::eq(*d, def)) {
            enabled.push(def);
        }
        true
    }

    /// Every served resource: the fixed table, then the enabled optional ones.
    pub(crate) fn all(&self) -> Vec<&'static ResourceDef> {
        let enabled = self.enabled.read().unwrap_or_else(PoisonError::into_inner);
        RESOURCES.iter().chain(enabled.iter().copied()).collect()
    }

    pub(crate) fn by_path(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static ResourceDef> {
        self.all()
            .into_iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub(crate) fn by_kind(&self, api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
        self.all()
            .into_iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
    }

    /// By plural, qualified plural (`poddisruptionbudgets.policy`) or kind; for a resource served
    /// in several versions, the first enabled.
    pub(crate) fn by_name(&self, name: &str) -> Option<&'static ResourceDef> {
        self.all()
            .into_iter()
            .find(|r| r.plural == name || r.qualified() == name || r.kind == name)
    }

    /// Any enabled version of a group's resource (objects are shared between versions).
    pub(crate) fn any_version(&self, group: &str, plural: &str) -> Option<&'static ResourceDef> {
        self.all()
            .into_iter()
            .find(|r| r.group == group && r.plural == plural)
    }

    /// Served group/versions, in table order.
    pub(crate) fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut out: Vec<(&str, &str)> = Vec::new();
        for r in self.all() {
            if !out.contains(&(r.group, r.version)) {
                out.push((r.group, r.version));
            }
        }
        out
    }
}

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

/// Looks a resource up by plural, qualified plural (`poddisruptionbudgets.policy`) or kind.
#[cfg(test)]
pub(crate) fn by_name(name: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.plural == name || r.qualified() == name || r.kind == name)
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

pub(crate) fn priority_classes() -> &'static ResourceDef {
    by_path("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("PriorityClasses are in the resource table")
}

pub(crate) fn nodes() -> &'static ResourceDef {
    by_path("", "v1", "nodes").expect("nodes are in the resource table")
}

pub(crate) fn pod_templates() -> &'static ResourceDef {
    by_path("", "v1", "podtemplates").expect("PodTemplates are in the resource table")
}
