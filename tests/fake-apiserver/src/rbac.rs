//! RBAC authorization, decided as kube-apiserver's RBAC authorizer decides it
//! (plugin/pkg/auth/authorizer/rbac/rbac.go).
//!
//! An [`Rbac`] holds the ClusterRoles, ClusterRoleBindings, Roles and RoleBindings of some
//! manifests (other kinds are ignored) plus the bootstrap roles every authenticated user holds,
//! and answers for one user. Once [`crate::FakeApiServer::enforce_rbac`] is called, every request
//! that reaches the service is authorized against it before it is served; a denied one gets the
//! apiserver's 403 `Forbidden` Status and is listed by [`crate::FakeApiServer::denied`].
//!
//! Not modelled: authentication (every request is the configured user), impersonation, other
//! authorizers (Node, webhook, ABAC), `system:masters`, and ClusterRole `aggregationRule` (an
//! aggregated ClusterRole grants exactly the `rules` written in the manifest; the aggregation
//! controller that would fill them in does not run).

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::error::ApiError;
use crate::faults::RequestRecord;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const SA_PREFIX: &str = "system:serviceaccount:";

// rbac: the ClusterRoles and ClusterRoleBindings every cluster starts with that concern any
// authenticated user (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go ClusterRoles,
// ClusterRoleBindings): discovery and health paths, and the self-review APIs.
const BOOTSTRAP: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:discovery"}
rules:
  - verbs: [get]
    nonResourceURLs: [/livez, /readyz, /healthz, /version, /version/, /openapi, /openapi/*,
                      /api, /api/*, /apis, /apis/*]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:public-info-viewer"}
rules:
  - verbs: [get]
    nonResourceURLs: [/livez, /readyz, /healthz, /version, /version/]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:basic-user"}
rules:
  - verbs: [create]
    apiGroups: [authorization.k8s.io]
    resources: [selfsubjectaccessreviews, selfsubjectrulesreviews]
  - verbs: [create]
    apiGroups: [authentication.k8s.io]
    resources: [selfsubjectreviews]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:discovery"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:discovery"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:public-info-viewer"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:public-info-viewer"}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:unauthenticated"}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:basic-user"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:basic-user"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: "system:authenticated"}]
"#;

/// The authorization attributes of one request, as the apiserver's `RequestInfoFactory` derives
/// them from the method, path and query (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection` for
    /// resource requests; the lower-case HTTP method for non-resource requests.
    pub verb: String,
    /// Whether the path names an API resource (`/api/v1/...`, `/apis/g/v/...` with a resource).
    pub resource_request: bool,
    /// `""` for the core group (`/api/v1`).
    pub api_group: String,
    pub api_version: String,
    /// `""` for cluster-scoped requests; a namespace's own name for `/api/v1/namespaces/{name}`.
    pub namespace: String,
    /// The plural, e.g. `pods`.
    pub resource: String,
    /// e.g. `eviction` for `pods/{name}/eviction`; `""` when none.
    pub subresource: String,
    /// `""` for collection requests (create, list, watch, deletecollection) unless a list or
    /// watch selects `metadata.name=` exactly.
    pub name: String,
    /// The URL path.
    pub path: String,
}

impl Attributes {
    /// The attributes of a request with this method, path and raw query string.
    pub fn from_request(method: &str, path: &str, query: &str) -> Attributes {
        let mut a = Attributes {
            verb: method.to_ascii_lowercase(),
            path: path.to_string(),
            ..Attributes::default()
        };
        let all: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // requestinfo: fewer than three segments, or no /api or /apis prefix, is a non-resource
        // request; so are /apis/{group} and /apis/{group}/{version}
        // (requestinfo.go NewRequestInfo).
        let mut parts: &[&str] = match all.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => {
                a.api_version = version.to_string();
                rest
            }
            ["apis", group, version, rest @ ..] if !rest.is_empty() => {
                a.api_group = group.to_string();
                a.api_version = version.to_string();
                rest
            }
            _ => return a,
        };
        a.resource_request = true;
        // requestinfo: /{proxy|watch}/... sets the verb from the path; otherwise it comes from
        // the HTTP method.
        if let [special @ ("watch" | "proxy"), rest @ ..] = parts {
            a.verb = special.to_string();
            parts = rest;
        } else {
            a.verb = match method.to_ascii_uppercase().as_str() {
                "POST" => "create",
                "GET" | "HEAD" => "get",
                "PUT" => "update",
                "PATCH" => "patch",
                "DELETE" => "delete",
                _ => "",
            }
            .to_string();
        }
        // requestinfo: /namespaces/{ns}/{resource}/... is namespaced; /namespaces/{ns},
        // /namespaces/{ns}/status and /namespaces/{ns}/finalize are the Namespace object itself,
        // whose namespace attribute is its own name.
        if let ["namespaces", ns, rest @ ..] = parts {
            a.namespace = ns.to_string();
            if !rest.is_empty() && !matches!(rest[0], "status" | "finalize") {
                parts = rest;
            }
        }
        if let Some(resource) = parts.first() {
            a.resource = resource.to_string();
        }
        if let Some(name) = parts.get(1) {
            a.name = name.to_string();
        }
        if let Some(sub) = parts.get(2)
            && a.verb != "proxy"
        {
            a.subresource = sub.to_string();
        }
        let q: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let param = |key: &str| q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        // requestinfo: a get without a name is a list, or a watch with `watch` set; the fake
        // serves a watch for `watch=true` or `watch=1` only, so those are what make a watch here.
        if a.name.is_empty() && a.verb == "get" {
            a.verb = if matches!(param("watch"), Some("true" | "1")) {
                "watch".into()
            } else {
                "list".into()
            };
            // requestinfo: a list or watch whose field selector requires metadata.name=X is
            // authorized as a request for the name X, so resourceNames rules can allow it.
            if let Some(name) = param("fieldSelector").and_then(exact_name) {
                a.name = name;
            }
        }
        // requestinfo: a delete without a name is deletecollection.
        if a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".into();
        }
        a
    }

    /// A resource request, for [`Rbac::allows`]: `Attributes::resource("update", "", "nodes")`,
    /// refined with [`Attributes::named`], [`Attributes::in_namespace`] and
    /// [`Attributes::with_subresource`].
    pub fn resource(verb: &str, api_group: &str, resource: &str) -> Attributes {
        Attributes {
            verb: verb.to_string(),
            resource_request: true,
            api_group: api_group.to_string(),
            resource: resource.to_string(),
            ..Attributes::default()
        }
    }

    /// A non-resource request (`get` on `/version`, `/healthz`, ...).
    pub fn non_resource(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.to_string(),
            path: path.to_string(),
            ..Attributes::default()
        }
    }

    pub fn named(mut self, name: &str) -> Attributes {
        self.name = name.to_string();
        self
    }

    pub fn in_namespace(mut self, namespace: &str) -> Attributes {
        self.namespace = namespace.to_string();
        self
    }

    pub fn with_subresource(mut self, subresource: &str) -> Attributes {
        self.subresource = subresource.to_string();
        self
    }

    /// `resource` or `resource/subresource`, as rules and messages name it.
    fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

// requestinfo: fields.Selector.RequiresExactMatch("metadata.name"), kept only when the value is
// a valid path segment name (k8s.io/apimachinery/pkg/api/validation/path IsValidPathSegmentName).
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        if term.contains("!=") {
            return None;
        }
        let (key, value) = term.split_once("==").or_else(|| term.split_once('='))?;
        let value = value.trim();
        let valid = !matches!(value, "" | "." | "..") && !value.contains(['/', '%']);
        (key.trim() == "metadata.name" && valid).then(|| value.to_string())
    })
}

/// One `PolicyRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    non_resource_urls: Vec<String>,
}

fn has_or_all(list: &[String], wanted: &str) -> bool {
    list.iter().any(|v| v == "*" || v == wanted)
}

// rbac: a rule allows a resource request when verb, API group, resource and name all match, and
// a non-resource request when verb and URL match (plugin/pkg/auth/authorizer/rbac/rbac.go
// RuleAllows; pkg/apis/rbac/v1/evaluation_helpers.go).
fn rule_allows(a: &Attributes, rule: &Rule) -> bool {
    if !has_or_all(&rule.verbs, &a.verb) {
        return false;
    }
    if !a.resource_request {
        return rule
            .non_resource_urls
            .iter()
            .any(|url| non_resource_url_matches(url, &a.path));
    }
    has_or_all(&rule.api_groups, &a.api_group)
        && rule
            .resources
            .iter()
            .any(|r| resource_matches(r, &a.combined_resource(), &a.subresource))
        // rbac: no resourceNames means every name; otherwise the request's name must be listed,
        // so create and unnamed list/watch requests (no name) never match (ResourceNameMatches).
        && (rule.resource_names.is_empty() || rule.resource_names.contains(&a.name))
}

// rbac: `*`, the exact `resource` or `resource/subresource`, or `*/subresource`; a rule for
// `pods` does not cover `pods/eviction`, and `pods/*` is not a wildcard (ResourceMatches).
fn resource_matches(rule_resource: &str, combined: &str, subresource: &str) -> bool {
    rule_resource == "*"
        || rule_resource == combined
        || (!subresource.is_empty() && rule_resource.strip_prefix("*/") == Some(subresource))
}

// rbac: `*`, an exact path, or a prefix ending in `*` (NonResourceURLMatches).
fn non_resource_url_matches(rule_url: &str, path: &str) -> bool {
    rule_url == "*"
        || rule_url == path
        || rule_url
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoleKind {
    Role,
    ClusterRole,
}

#[derive(Debug, Clone)]
struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Debug, Clone)]
struct Binding {
    name: String,
    /// `""` for a ClusterRoleBinding.
    namespace: String,
    role_kind: RoleKind,
    role_name: String,
    subjects: Vec<Subject>,
}

/// Manifests that are not valid RBAC objects (as the apiserver's validation would refuse them),
/// or YAML that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacError(String);

impl fmt::Display for RbacError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RbacError {}

/// The RBAC policy of some manifests, evaluated for one user.
///
/// ```text
/// let yaml = std::fs::read_to_string("deploy/manifests/eviction-router.yaml")?;
/// let user = "system:serviceaccount:eviction-router:eviction-router";
/// let rbac = Rbac::from_manifests(&yaml, user)?;
/// assert!(!rbac.allows(&Attributes::resource("update", "", "nodes").named("n1")));
/// fake.enforce_rbac(rbac);
/// ```
#[derive(Debug, Clone)]
pub struct Rbac {
    user: String,
    groups: Vec<String>,
    cluster_roles: BTreeMap<String, Vec<Rule>>,
    roles: BTreeMap<(String, String), Vec<Rule>>,
    cluster_role_bindings: Vec<Binding>,
    role_bindings: Vec<Binding>,
}

// rbac: a service account's token carries the groups system:serviceaccounts and
// system:serviceaccounts:<namespace> (k8s.io/apiserver/pkg/authentication/serviceaccount/util.go
// MakeGroupNames), and every authenticated user gets system:authenticated
// (k8s.io/apiserver/pkg/authentication/group/authenticated_group_adder.go).
fn groups_of(user: &str) -> Vec<String> {
    let mut groups = Vec::new();
    if let Some((ns, name)) = user
        .strip_prefix(SA_PREFIX)
        .and_then(|rest| rest.split_once(':'))
        && !ns.is_empty()
        && !name.is_empty()
        && !name.contains(':')
    {
        groups.push("system:serviceaccounts".to_string());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    groups.push("system:authenticated".to_string());
    groups
}

fn err(doc: usize, what: &str, why: impl fmt::Display) -> RbacError {
    RbacError(format!("document {doc}: {what}: {why}"))
}

fn strings(v: &Value, key: &str, doc: usize, what: &str) -> Result<Vec<String>, RbacError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(String::from)
                    .ok_or_else(|| err(doc, what, format!("{key} must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(err(doc, what, format!("{key} must be a list of strings"))),
    }
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

impl Rbac {
    /// Only the bootstrap policy (discovery, health and version paths, and the self-review APIs
    /// bound to `system:authenticated`), for `user`.
    pub fn new(user: &str) -> Rbac {
        let mut rbac = Rbac {
            user: user.to_string(),
            groups: groups_of(user),
            cluster_roles: BTreeMap::new(),
            roles: BTreeMap::new(),
            cluster_role_bindings: Vec::new(),
            role_bindings: Vec::new(),
        };
        // The bootstrap policy is a constant of this module; a mistake in it fails every test.
        if let Err(e) = rbac.add_manifests(BOOTSTRAP) {
            panic!("fake-apiserver's bootstrap RBAC policy is invalid: {e}");
        }
        rbac
    }

    /// The bootstrap policy plus the RBAC objects of `yaml` (YAML or JSON documents, `List`s
    /// flattened), for `user` — e.g. `system:serviceaccount:<namespace>:<name>`, which also
    /// holds that service account's groups.
    pub fn from_manifests(yaml: &str, user: &str) -> Result<Rbac, RbacError> {
        let mut rbac = Rbac::new(user);
        rbac.add_manifests(yaml)?;
        Ok(rbac)
    }

    /// Adds the RBAC objects of more manifests; an object with the kind, namespace and name of
    /// one already held replaces it, as `kubectl apply` would.
    pub fn add_manifests(&mut self, yaml: &str) -> Result<(), RbacError> {
        for (i, doc) in serde_norway::Deserializer::from_str(yaml).enumerate() {
            // A syntax error anywhere fails the first document; its message has the line.
            let value: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| RbacError(format!("invalid YAML: {e}")))?;
            self.add_object(&value, i + 1)?;
        }
        Ok(())
    }

    /// The user requests are authorized as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The groups that user is in.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    fn add_object(&mut self, obj: &Value, doc: usize) -> Result<(), RbacError> {
        if obj.get("kind").and_then(Value::as_str) == Some("List") {
            for item in obj
                .get("items")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.add_object(item, doc)?;
            }
            return Ok(());
        }
        let api_version = text(obj, "/apiVersion");
        if api_version.split_once('/').map(|(g, _)| g) != Some(RBAC_GROUP) {
            return Ok(());
        }
        let kind = text(obj, "/kind");
        let name = text(obj, "/metadata/name").to_string();
        let namespace = text(obj, "/metadata/namespace").to_string();
        let what = format!("{kind} {name:?}");
        let namespaced = matches!(kind, "Role" | "RoleBinding");
        if !matches!(
            kind,
            "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding"
        ) {
            return Ok(());
        }
        if name.is_empty() {
            return Err(err(doc, &what, "metadata.name is required"));
        }
        // A namespaced object without a namespace would land in whatever namespace kubectl or
        // Helm was pointed at; the fake cannot guess it.
        if namespaced && namespace.is_empty() {
            return Err(err(doc, &what, "metadata.namespace is required"));
        }
        match kind {
            "ClusterRole" | "Role" => {
                let rules = obj
                    .get("rules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                    .map(|(i, r)| parse_rule(r, namespaced, doc, &format!("{what} rules[{i}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                if namespaced {
                    self.roles.insert((namespace, name), rules);
                } else {
                    self.cluster_roles.insert(name, rules);
                }
            }
            _ => {
                let binding = parse_binding(obj, &name, &namespace, namespaced, doc, &what)?;
                let list = if namespaced {
                    &mut self.role_bindings
                } else {
                    &mut self.cluster_role_bindings
                };
                list.retain(|b| !(b.namespace == namespace && b.name == name));
                list.push(binding);
            }
        }
        Ok(())
    }

    // rbac: a ServiceAccount subject without a namespace means the binding's namespace; User and
    // Group subjects match by name (pkg/registry/rbac/validation/rule.go appliesToUser).
    fn applies(&self, subjects: &[Subject], binding_namespace: &str) -> bool {
        subjects.iter().any(|s| match s.kind.as_str() {
            "User" => s.name == self.user,
            "Group" => self.groups.contains(&s.name),
            "ServiceAccount" => {
                let ns = if s.namespace.is_empty() {
                    binding_namespace
                } else {
                    &s.namespace
                };
                !ns.is_empty() && self.user == format!("{SA_PREFIX}{ns}:{}", s.name)
            }
            _ => false,
        })
    }

    // rbac: ClusterRoleBindings apply everywhere; RoleBindings (to a Role or a ClusterRole) only
    // to requests in their namespace. The first allowing rule wins; bindings to missing roles
    // are remembered for the denial's reason (pkg/registry/rbac/validation/rule.go VisitRulesFor).
    fn decide(&self, a: &Attributes) -> Result<(), Vec<String>> {
        let mut missing = Vec::new();
        let namespaced = self
            .role_bindings
            .iter()
            .filter(|b| !a.namespace.is_empty() && b.namespace == a.namespace);
        for b in self.cluster_role_bindings.iter().chain(namespaced) {
            if !self.applies(&b.subjects, &b.namespace) {
                continue;
            }
            let rules = match b.role_kind {
                RoleKind::ClusterRole => self.cluster_roles.get(&b.role_name),
                RoleKind::Role => self.roles.get(&(b.namespace.clone(), b.role_name.clone())),
            };
            match rules {
                Some(rules) if rules.iter().any(|r| rule_allows(a, r)) => return Ok(()),
                Some(_) => {}
                None => {
                    let kind = match b.role_kind {
                        RoleKind::ClusterRole => "clusterrole",
                        RoleKind::Role => "role",
                    };
                    let e = format!("{kind}.{RBAC_GROUP} {:?} not found", b.role_name);
                    if !missing.contains(&e) {
                        missing.push(e);
                    }
                }
            }
        }
        Err(missing)
    }

    /// Whether the policy allows the request.
    pub fn allows(&self, attributes: &Attributes) -> bool {
        self.decide(attributes).is_ok()
    }

    /// `Ok` when the policy allows the request, else the 403 `Forbidden` the apiserver answers.
    pub fn authorize(&self, a: &Attributes) -> Result<(), ApiError> {
        let missing = match self.decide(a) {
            Ok(()) => return Ok(()),
            Err(missing) => missing,
        };
        // apiserver: the message names the user, verb, resource[/subresource], group and scope
        // (k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go forbiddenMessage).
        let user = &self.user;
        let mut why = if !a.resource_request {
            format!("User {user:?} cannot {} path {:?}", a.verb, a.path)
        } else {
            let scope = if a.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {:?}", a.namespace)
            };
            format!(
                "User {user:?} cannot {} resource {:?} in API group {:?} {scope}",
                a.verb,
                a.combined_resource(),
                a.api_group
            )
        };
        // rbac: bindings to missing roles become the reason "RBAC: <errors>", appended after
        // ": " (rbac.go Authorize, utilerrors.NewAggregate).
        if !missing.is_empty() {
            let errors = if missing.len() == 1 {
                missing.join("")
            } else {
                format!("[{}]", missing.join(", "))
            };
            why = format!("{why}: RBAC: {errors}");
        }
        let (group, resource) = if a.resource_request {
            (a.api_group.as_str(), a.resource.as_str())
        } else {
            ("", "")
        };
        Err(ApiError::forbidden_resource(group, resource, &a.name, &why))
    }
}

// rbac: validation the apiserver applies to PolicyRules (pkg/apis/rbac/validation/validation.go
// ValidatePolicyRule).
fn parse_rule(r: &Value, namespaced: bool, doc: usize, what: &str) -> Result<Rule, RbacError> {
    let rule = Rule {
        verbs: strings(r, "verbs", doc, what)?,
        api_groups: strings(r, "apiGroups", doc, what)?,
        resources: strings(r, "resources", doc, what)?,
        resource_names: strings(r, "resourceNames", doc, what)?,
        non_resource_urls: strings(r, "nonResourceURLs", doc, what)?,
    };
    if rule.verbs.is_empty() {
        return Err(err(doc, what, "verbs must contain at least one value"));
    }
    if !rule.non_resource_urls.is_empty() {
        if namespaced {
            return Err(err(
                doc,
                what,
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if !(rule.api_groups.is_empty()
            && rule.resources.is_empty()
            && rule.resource_names.is_empty())
        {
            let why = "rules cannot apply to both regular resources and non-resource URLs";
            return Err(err(doc, what, why));
        }
        return Ok(rule);
    }
    if rule.api_groups.is_empty() {
        return Err(err(
            doc,
            what,
            "resource rules must supply at least one api group",
        ));
    }
    if rule.resources.is_empty() {
        return Err(err(
            doc,
            what,
            "resource rules must supply at least one resource",
        ));
    }
    Ok(rule)
}

// rbac: a ClusterRoleBinding may only reference a ClusterRole, a RoleBinding a Role or a
// ClusterRole; ServiceAccount subjects of a ClusterRoleBinding need a namespace
// (pkg/apis/rbac/validation/validation.go ValidateRoleBinding, ValidateRoleBindingSubject).
fn parse_binding(
    obj: &Value,
    name: &str,
    namespace: &str,
    namespaced: bool,
    doc: usize,
    what: &str,
) -> Result<Binding, RbacError> {
    let role_kind = match (text(obj, "/roleRef/kind"), namespaced) {
        ("ClusterRole", _) => RoleKind::ClusterRole,
        ("Role", true) => RoleKind::Role,
        (other, _) => {
            let allowed = if namespaced {
                "\"Role\", \"ClusterRole\""
            } else {
                "\"ClusterRole\""
            };
            let why =
                format!("roleRef.kind: Unsupported value: {other:?}: supported values: {allowed}");
            return Err(err(doc, what, why));
        }
    };
    let role_name = text(obj, "/roleRef/name").to_string();
    if role_name.is_empty() {
        return Err(err(doc, what, "roleRef.name is required"));
    }
    let mut subjects = Vec::new();
    for (i, s) in obj
        .get("subjects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let subject = Subject {
            kind: text(s, "/kind").to_string(),
            name: text(s, "/name").to_string(),
            namespace: text(s, "/namespace").to_string(),
        };
        if !matches!(subject.kind.as_str(), "ServiceAccount" | "User" | "Group") {
            let why = format!(
                "subjects[{i}].kind: Unsupported value: {:?}: supported values: \"ServiceAccount\", \"User\", \"Group\"",
                subject.kind
            );
            return Err(err(doc, what, why));
        }
        if subject.name.is_empty() {
            return Err(err(doc, what, format!("subjects[{i}].name is required")));
        }
        if subject.kind == "ServiceAccount" && subject.namespace.is_empty() && !namespaced {
            return Err(err(
                doc,
                what,
                format!("subjects[{i}].namespace is required"),
            ));
        }
        subjects.push(subject);
    }
    Ok(Binding {
        name: name.to_string(),
        namespace: namespace.to_string(),
        role_kind,
        role_name,
        subjects,
    })
}

/// A request the fake refused because the policy did not allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The request as the request log has it (status 403).
    pub request: RequestRecord,
    /// What was asked for.
    pub attributes: Attributes,
    /// The `Status.message` sent.
    pub message: String,
}

/// The policy being enforced, if any, and the denials so far.
#[derive(Debug, Default)]
pub(crate) struct Enforcer {
    rbac: Mutex<Option<Arc<Rbac>>>,
    denials: Mutex<Vec<Denial>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Enforcer {
    pub(crate) fn set(&self, rbac: Option<Rbac>) {
        *lock(&self.rbac) = rbac.map(Arc::new);
    }

    /// `None` when the request may proceed (allowed, or no policy enforced); otherwise its
    /// attributes and the 403 to answer.
    pub(crate) fn check(
        &self,
        method: &str,
        path: &str,
        query: &str,
    ) -> Option<(Attributes, ApiError)> {
        let rbac = lock(&self.rbac).clone()?;
        let attributes = Attributes::from_request(method, path, query);
        rbac.authorize(&attributes).err().map(|e| (attributes, e))
    }

    pub(crate) fn record(&self, denial: Denial) {
        lock(&self.denials).push(denial);
    }

    pub(crate) fn denials(&self) -> Vec<Denial> {
        lock(&self.denials).clone()
    }

    pub(crate) fn clear(&self) {
        lock(&self.denials).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SA: &str = "system:serviceaccount:router:router";

    fn rbac(yaml: &str) -> Rbac {
        Rbac::from_manifests(yaml, SA).unwrap()
    }

    fn cluster_role(rules: &str) -> String {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: r}}
rules: {rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: r}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}}
subjects: [{{kind: ServiceAccount, name: router, namespace: router}}]
"
        )
    }

    fn res(verb: &str, group: &str, resource: &str) -> Attributes {
        Attributes::resource(verb, group, resource)
    }

    #[test]
    fn request_attributes() {
        let a = Attributes::from_request("GET", "/api/v1/nodes", "");
        assert_eq!((a.verb.as_str(), a.resource.as_str()), ("list", "nodes"));
        assert!(a.resource_request && a.namespace.is_empty() && a.name.is_empty());
        let a = Attributes::from_request("GET", "/api/v1/nodes", "watch=1&resourceVersion=5");
        assert_eq!(a.verb, "watch");
        let a = Attributes::from_request("GET", "/api/v1/nodes", "watch=false");
        assert_eq!(a.verb, "list");
        let a = Attributes::from_request("GET", "/api/v1/watch/namespaces/a/pods", "");
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("watch", "a"));
        assert_eq!(a.resource, "pods");
        let a = Attributes::from_request("PUT", "/api/v1/nodes/n1", "");
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("update", "n1"));
        let a = Attributes::from_request("POST", "/api/v1/namespaces/d/pods/p/eviction", "");
        assert_eq!(
            (a.verb.as_str(), a.namespace.as_str(), a.name.as_str()),
            ("create", "d", "p")
        );
        assert_eq!(
            (a.resource.as_str(), a.subresource.as_str()),
            ("pods", "eviction")
        );
        let a = Attributes::from_request(
            "PATCH",
            "/apis/coordination.k8s.io/v1/namespaces/x/leases/l",
            "",
        );
        assert_eq!(
            (
                a.verb.as_str(),
                a.api_group.as_str(),
                a.api_version.as_str()
            ),
            ("patch", "coordination.k8s.io", "v1")
        );
        let a = Attributes::from_request("DELETE", "/api/v1/namespaces/d/pods", "");
        assert_eq!(a.verb, "deletecollection");
        let a = Attributes::from_request("DELETE", "/api/v1/namespaces/d/pods/p", "");
        assert_eq!(a.verb, "delete");
        // A Namespace is in its own namespace; its status is a subresource, not a resource.
        let a = Attributes::from_request("GET", "/api/v1/namespaces/d/status", "");
        assert_eq!(
            (a.namespace.as_str(), a.resource.as_str(), a.name.as_str()),
            ("d", "namespaces", "d")
        );
        assert_eq!((a.verb.as_str(), a.subresource.as_str()), ("get", "status"));
        let a = Attributes::from_request("GET", "/api/v1/namespaces", "");
        assert_eq!((a.verb.as_str(), a.namespace.as_str()), ("list", ""));
        // An exact metadata.name field selector names the list.
        let a = Attributes::from_request(
            "GET",
            "/api/v1/namespaces/d/pods",
            "fieldSelector=metadata.name%3Dp%2Cspec.nodeName%3Dn",
        );
        assert_eq!((a.verb.as_str(), a.name.as_str()), ("list", "p"));
        let a = Attributes::from_request("GET", "/api/v1/pods", "fieldSelector=metadata.name!%3Dp");
        assert_eq!(a.name, "");
        for path in [
            "/version",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/policy",
            "/apis/policy/v1",
        ] {
            let a = Attributes::from_request("GET", path, "");
            assert!(!a.resource_request, "{path}");
            assert_eq!(a.verb, "get");
        }
    }

    #[test]
    fn wildcards_and_subresources() {
        let r = rbac(&cluster_role(
            "[{apiGroups: [''], resources: [pods], verbs: ['*']},
              {apiGroups: ['*'], resources: ['*/status'], verbs: [update]},
              {apiGroups: [apps], resources: ['*'], verbs: [get]},
              {apiGroups: [''], resources: ['nodes/*'], verbs: [create]}]",
        ));
        assert!(r.allows(&res("delete", "", "pods").in_namespace("a").named("p")));
        // A rule for pods does not cover its subresources.
        assert!(!r.allows(&res("create", "", "pods").with_subresource("eviction")));
        assert!(
            r.allows(&res("update", "policy", "poddisruptionbudgets").with_subresource("status"))
        );
        assert!(!r.allows(&res("update", "", "nodes")));
        assert!(
            r.allows(
                &res("get", "apps", "daemonsets")
                    .in_namespace("a")
                    .named("d")
            )
        );
        assert!(r.allows(&res("get", "apps", "daemonsets").with_subresource("status")));
        assert!(!r.allows(&res("get", "batch", "jobs")));
        // As upstream, `nodes/*` is not a wildcard over node subresources.
        assert!(!r.allows(&res("create", "", "nodes").with_subresource("proxy")));
        assert!(!r.allows(&res("create", "", "nodes")));
    }

    #[test]
    fn resource_names_never_allow_unnamed_requests() {
        let r = rbac(&cluster_role(
            "[{apiGroups: [''], resources: [configmaps], resourceNames: [c], verbs: [get, list, create, deletecollection]}]",
        ));
        let cm = || res("get", "", "configmaps").in_namespace("a");
        assert!(r.allows(&cm().named("c")));
        assert!(!r.allows(&cm().named("other")));
        for verb in ["create", "list", "deletecollection"] {
            let a = Attributes {
                verb: verb.into(),
                ..cm()
            };
            assert!(!r.allows(&a), "{verb}");
        }
        // ... except a list that selects metadata.name exactly.
        let by_name = Attributes::from_request(
            "GET",
            "/api/v1/namespaces/a/configmaps",
            "fieldSelector=metadata.name%3Dc",
        );
        assert!(r.allows(&by_name));
    }

    #[test]
    fn role_bindings_scope_to_their_namespace() {
        let r = rbac(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: reader}
subjects: [{kind: ServiceAccount, name: router, namespace: router}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leases, namespace: router}
rules: [{apiGroups: [coordination.k8s.io], resources: [leases], verbs: [create]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: leases, namespace: router}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: leases}
# No namespace: the binding's own.
subjects: [{kind: ServiceAccount, name: router}]
",
        );
        let pod = |ns: &str| res("get", "", "pods").in_namespace(ns).named("p");
        assert!(r.allows(&pod("a")));
        assert!(!r.allows(&pod("b")));
        assert!(!r.allows(&res("get", "", "pods").named("p")));
        let lease = |ns: &str| res("create", "coordination.k8s.io", "leases").in_namespace(ns);
        assert!(r.allows(&lease("router")));
        assert!(!r.allows(&lease("a")));
        // Another service account of the same name elsewhere is someone else.
        let other = Rbac::from_manifests(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: router, namespace: router}]",
            "system:serviceaccount:other:router",
        )
        .unwrap();
        assert!(!other.allows(&pod("a")));
    }

    #[test]
    fn groups_users_and_bootstrap_paths() {
        let r = rbac(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: r}
rules:
  - {apiGroups: [''], resources: [nodes], verbs: [list]}
  - {nonResourceURLs: [/metrics, '/logs/*'], verbs: [get]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: r}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}
subjects: [{kind: Group, name: 'system:serviceaccounts:router'}]
",
        );
        assert_eq!(
            r.groups(),
            [
                "system:serviceaccounts",
                "system:serviceaccounts:router",
                "system:authenticated"
            ]
        );
        assert!(r.allows(&res("list", "", "nodes")));
        for path in [
            "/version",
            "/api",
            "/api/v1",
            "/apis/policy/v1",
            "/openapi/v3",
            "/healthz",
            "/metrics",
            "/logs/x",
        ] {
            assert!(r.allows(&Attributes::non_resource("get", path)), "{path}");
        }
        assert!(!r.allows(&Attributes::non_resource("get", "/")));
        assert!(!r.allows(&Attributes::non_resource("post", "/api")));
        assert!(r.allows(&res(
            "create",
            "authorization.k8s.io",
            "selfsubjectaccessreviews"
        )));
        let user = Rbac::from_manifests(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: r}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: r}
subjects: [{kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: r}
rules: [{apiGroups: [''], resources: [nodes], verbs: [get]}]",
            "alice",
        )
        .unwrap();
        assert_eq!(user.groups(), ["system:authenticated"]);
        assert!(user.allows(&res("get", "", "nodes").named("n")));
    }

    #[test]
    fn forbidden_messages() {
        let r = rbac(&cluster_role(
            "[{apiGroups: [''], resources: [nodes], verbs: [get]}]",
        ));
        let e = r
            .authorize(&res("update", "", "nodes").named("n1"))
            .unwrap_err();
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            e.message,
            format!(
                "nodes \"n1\" is forbidden: User \"{SA}\" cannot update resource \"nodes\" in API group \"\" at the cluster scope"
            )
        );
        assert_eq!(
            e.details,
            Some(serde_json::json!({"name": "n1", "kind": "nodes"}))
        );
        let e = r
            .authorize(&res("list", "coordination.k8s.io", "leases").in_namespace("d"))
            .unwrap_err();
        assert_eq!(
            e.message,
            format!(
                "leases.coordination.k8s.io is forbidden: User \"{SA}\" cannot list resource \"leases\" in API group \"coordination.k8s.io\" in the namespace \"d\""
            )
        );
        assert_eq!(
            e.details,
            Some(serde_json::json!({"group": "coordination.k8s.io", "kind": "leases"}))
        );
        let e = r
            .authorize(&Attributes::non_resource("get", "/metrics"))
            .unwrap_err();
        assert_eq!(
            e.message,
            format!("forbidden: User \"{SA}\" cannot get path \"/metrics\"")
        );
        assert_eq!(e.details, Some(serde_json::json!({})));

        // A binding to a role the manifests lack is reported as the apiserver does.
        let dangling = rbac(
            "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: r}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: missing}
subjects: [{kind: ServiceAccount, name: router, namespace: router}]",
        );
        let e = dangling
            .authorize(&res("get", "", "nodes").named("n"))
            .unwrap_err();
        assert!(
            e.message.ends_with(
                "at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io \"missing\" not found"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn invalid_objects_are_refused() {
        let bad = [
            // A ClusterRoleBinding cannot reference a Role.
            (
                "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: r}
roleRef: {kind: Role, name: r}
subjects: []",
                "roleRef.kind: Unsupported value: \"Role\"",
            ),
            (
                "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: r}
roleRef: {kind: ClusterRole, name: r}
subjects: [{kind: ServiceAccount, name: a}]",
                "subjects[0].namespace is required",
            ),
            (
                "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r}
rules: []",
                "metadata.namespace is required",
            ),
            (
                "apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: r}
rules: [{apiGroups: [''], resources: [pods]}]",
                "rules[0]: verbs must contain at least one value",
            ),
            (
                "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: r, namespace: a}
rules: [{nonResourceURLs: [/x], verbs: [get]}]",
                "namespaced rules cannot apply to non-resource URLs",
            ),
            ("---\nkind: [unterminated", "invalid YAML: "),
        ];
        for (yaml, want) in bad {
            let e = Rbac::from_manifests(yaml, SA).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        // Other kinds, and empty documents, are ignored.
        let r = rbac(
            "---\n# nothing\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n",
        );
        assert!(!r.allows(&res("get", "", "pods").in_namespace("a").named("p")));
    }
}
