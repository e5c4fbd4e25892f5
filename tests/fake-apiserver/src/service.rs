//! HTTP routing: maps Kubernetes REST paths and verbs onto the store.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ApiError;
use crate::faults::RequestRecord;
use crate::rbac::Denial;
use crate::resources::{ResourceDef, Served};
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{Deleted, Preconditions, Target};
use crate::{Shared, admission, discovery, eviction, patch, watch};

const MAX_BODY: usize = 8 * 1024 * 1024;
// apiserver: a watch without timeoutSeconds runs for at least --min-request-timeout (1800s).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(String::from);
    let (latency, injected) = shared.faults.before(&method, &path);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut denied = None;
    let response = match injected {
        Some(err) => error_response(&err),
        // apiserver: authorization runs before any handler, after API Priority and Fairness
        // (k8s.io/apiserver/pkg/server/config.go DefaultBuildHandlerChain).
        None => match shared.rbac.check(method.as_str(), &path, &query) {
            Some((attributes, err)) => {
                let response = error_response(&err);
                denied = Some((attributes, err.message));
                response
            }
            None => dispatch(&shared, req)
                .await
                .unwrap_or_else(|e| error_response(&e)),
        },
    };
    let record = RequestRecord {
        method: method.to_string(),
        path,
        query,
        content_type,
        status: response.status().as_u16(),
    };
    if let Some((attributes, message)) = denied {
        shared.rbac.record(Denial {
            request: record.clone(),
            attributes,
            message,
        });
    }
    shared.faults.record(record);
    response
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    let mut response = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn error_response(err: &ApiError) -> Response {
    let mut response = json_response(err.code, &err.to_status());
    // apiserver: details.retryAfterSeconds is mirrored in a Retry-After header
    // (k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/status.go).
    if let Some(secs) = err.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Whether the client accepts plain JSON. Tables (`as=Table`), aggregated discovery
/// (`as=APIGroupDiscoveryList`) and protobuf are never produced, so clients that list a plain
/// JSON fallback get it and others get 406.
fn accepts_plain_json(accept: Option<&str>) -> bool {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return true;
    };
    accept.split(',').any(|media| {
        let mut parts = media.split(';').map(str::trim);
        let essence = parts.next().unwrap_or("");
        let transformed = parts.any(|p| p.starts_with("as="));
        !transformed && matches!(essence, "application/json" | "application/*" | "*/*")
    })
}

fn is_json_body(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.is_empty() || essence == "application/json" || essence == "*/*"
    })
}

enum Route {
    Version,
    Api,
    Apis,
    ResourceList(String, String),
    Collection {
        def: &'static ResourceDef,
        ns: Option<String>,
    },
    Object {
        def: &'static ResourceDef,
        ns: String,
        name: String,
    },
    Sub {
        def: &'static ResourceDef,
        ns: String,
        name: String,
        sub: String,
    },
}

fn route(served: &Served, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Ok(Route::Version),
        ["api"] => return Ok(Route::Api),
        ["apis"] => return Ok(Route::Apis),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        // /openapi/v2 and /openapi/v3 are not served: kubectl falls back without them.
        _ => return Err(ApiError::no_route()),
    };
    let Some(first) = rest.first() else {
        return Ok(Route::ResourceList(group.to_string(), version.to_string()));
    };
    let (ns, rest) = match rest {
        ["namespaces", ns, plural, ..]
            if served
                .by_path(group, version, plural)
                .is_some_and(|d| d.namespaced) =>
        {
            (Some(ns.to_string()), &rest[2..])
        }
        _ => (None, rest),
    };
    let plural = if ns.is_some() { rest[0] } else { first };
    let def = served
        .by_path(group, version, plural)
        .ok_or_else(ApiError::no_route)?;
    if rest.len() > 1 && def.namespaced != ns.is_some() {
        return Err(ApiError::no_route());
    }
    let ns_or_empty = ns.clone().unwrap_or_default();
    match rest {
        [_] => Ok(Route::Collection { def, ns }),
        [_, name] => Ok(Route::Object {
            def,
            ns: ns_or_empty,
            name: name.to_string(),
        }),
        [_, name, sub] if def.subresources.contains(sub) => Ok(Route::Sub {
            def,
            ns: ns_or_empty,
            name: name.to_string(),
            sub: sub.to_string(),
        }),
        _ => Err(ApiError::no_route()),
    }
}

fn parse_json(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    if !is_json_body(content_type) {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({}) - accepted media types include: application/json",
            content_type.unwrap_or("")
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn truthy(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| v == "true" || v == "1")
}

async fn dispatch(shared: &Arc<Shared>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let q: HashMap<String, String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if !accepts_plain_json(header_str(&parts.headers, header::ACCEPT)) {
        return Err(ApiError::not_acceptable(
            "only application/json is served (no Table, PartialObjectMetadata, aggregated discovery or protobuf)",
        ));
    }
    let content_type = header_str(&parts.headers, header::CONTENT_TYPE);
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    // apiserver: dryRun=All evaluates the request without persisting it.
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    let method = &parts.method;

    match route(&shared.served, parts.uri.path())? {
        Route::Version if method == Method::GET => Ok(json_response(200, &discovery::version())),
        Route::Api if method == Method::GET => Ok(json_response(200, &discovery::api_versions())),
        Route::Apis if method == Method::GET => Ok(json_response(
            200,
            &discovery::api_group_list(&shared.served),
        )),
        Route::ResourceList(g, v) if method == Method::GET => {
            discovery::resource_list(&shared.served, &g, &v)
                .map(|l| json_response(200, &l))
                .ok_or_else(ApiError::no_route)
        }
        Route::Collection { def, ns } => match *method {
            Method::GET if truthy(&q, "watch") => watch_request(shared, def, ns, &q),
            Method::GET => list(shared, def, ns.as_deref(), &q),
            Method::POST => {
                let Some(ns) = ns.or_else(|| (!def.namespaced).then(String::new)) else {
                    return Err(ApiError::method_not_allowed());
                };
                let mut obj = parse_json(content_type, &body)?;
                let created = shared.write(|s| {
                    admission::admit_create(s, def, &ns, &mut obj)?;
                    s.create(def, &ns, obj, Target::Main, dry_run)
                })?;
                Ok(json_response(201, &created))
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        Route::Object { def, ns, name } => match *method {
            Method::GET => get(shared, def, &ns, &name),
            Method::PUT => {
                let obj = parse_json(content_type, &body)?;
                let updated = shared.write(|s| {
                    admission::validate_update(s, def, &name, &obj)?;
                    s.update(def, &ns, &name, obj, Target::Main, dry_run)
                })?;
                Ok(json_response(200, &updated))
            }
            Method::PATCH => patch_request(
                shared,
                def,
                &ns,
                &name,
                content_type,
                &body,
                Target::Main,
                dry_run,
            ),
            Method::DELETE => delete(shared, def, &ns, &name, &body, dry_run),
            _ => Err(ApiError::method_not_allowed()),
        },
        Route::Sub { def, ns, name, sub } => match (sub.as_str(), method.clone()) {
            ("status", Method::GET) => get(shared, def, &ns, &name),
            ("status", Method::PUT) => {
                let obj = parse_json(content_type, &body)?;
                let updated =
                    shared.write(|s| s.update(def, &ns, &name, obj, Target::Status, dry_run))?;
                Ok(json_response(200, &updated))
            }
            ("status", Method::PATCH) => patch_request(
                shared,
                def,
                &ns,
                &name,
                content_type,
                &body,
                Target::Status,
                dry_run,
            ),
            ("eviction", Method::POST) => {
                parse_json(content_type, &body)?;
                // Recorded under the store's lock, so whoever sees the pod gone also sees the
                // eviction that removed it.
                let status = shared.write(|s| {
                    let (status, record) = eviction::evict(s, &ns, &name, &body, dry_run)?;
                    shared.record_eviction(record);
                    Ok::<_, ApiError>(status)
                })?;
                Ok(json_response(201, &status))
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn get(shared: &Shared, def: &ResourceDef, ns: &str, name: &str) -> Result<Response, ApiError> {
    let store = shared.store();
    let obj = store
        .get(def, ns, name)
        .ok_or_else(|| ApiError::not_found(def, name))?;
    Ok(json_response(200, obj))
}

fn list(
    shared: &Shared,
    def: &ResourceDef,
    ns: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), def)?;
    let store = shared.store();
    // apiserver: `limit` cuts the list into pages and `continue` resumes it; every page carries
    // the resourceVersion of the first (k8s.io/apiserver/pkg/storage/etcd3/store.go GetList).
    // Narrower than upstream: a page is cut from the current store by offset, not from the
    // first page's snapshot, so an object added or removed between pages may move across the
    // cut.
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let (offset, list_rv) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => token
            .split_once(':')
            .and_then(|(o, rv)| Some((o.parse::<usize>().ok()?, rv.to_owned())))
            .ok_or_else(|| ApiError::bad_request(format!("invalid continue token {token:?}")))?,
        None => (0, store.rv().to_string()),
    };
    let matching: Vec<&Value> = store
        .list(def, ns)
        .into_iter()
        .filter(|o| labels.matches_object(o) && fields.matches(o))
        .collect();
    let end = limit.map_or(matching.len(), |l| (offset + l).min(matching.len()));
    let more = end < matching.len();
    // apiserver: items of a typed list carry no apiVersion/kind; the list has them.
    let items: Vec<Value> = matching
        .get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|o| {
            let mut item = (*o).clone();
            if let Some(m) = item.as_object_mut() {
                m.remove("apiVersion");
                m.remove("kind");
            }
            item
        })
        .collect();
    Ok(json_response(
        200,
        &json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.api_version(),
            "metadata": if more {
                json!({
                    "resourceVersion": list_rv,
                    "continue": format!("{end}:{list_rv}"),
                    "remainingItemCount": matching.len() - end,
                })
            } else {
                json!({"resourceVersion": list_rv})
            },
            "items": items,
        }),
    ))
}

fn watch_request(
    shared: &Arc<Shared>,
    def: &'static ResourceDef,
    namespace: Option<String>,
    q: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let from = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv:?}")))?,
        ),
    };
    let timeout = match q.get("timeoutSeconds") {
        Some(s) => Duration::from_secs(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {s:?}")))?,
        ),
        None => DEFAULT_WATCH_TIMEOUT,
    };
    let req = watch::WatchRequest {
        def,
        namespace,
        labels: LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str), def)?,
        from: if truthy(q, "sendInitialEvents") {
            None
        } else {
            from
        },
        bookmarks: truthy(q, "allowWatchBookmarks"),
        send_initial_events: truthy(q, "sendInitialEvents"),
        timeout,
    };
    Ok(watch::start(shared.clone(), req))
}

#[allow(clippy::too_many_arguments)]
fn patch_request(
    shared: &Shared,
    def: &'static ResourceDef,
    ns: &str,
    name: &str,
    content_type: Option<&str>,
    body: &[u8],
    target: Target,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let kind = patch::patch_type(content_type.unwrap_or(""))?;
    let updated = shared.write(|s| {
        let current = s
            .get(def, ns, name)
            .ok_or_else(|| ApiError::not_found(def, name))?;
        let patched = patch::apply(def, name, kind, current, body)?;
        if target == Target::Main {
            admission::validate_update(s, def, name, &patched)?;
        }
        s.update(def, ns, name, patched, target, dry_run)
    })?;
    Ok(json_response(200, &updated))
}

fn delete(
    shared: &Shared,
    def: &'static ResourceDef,
    ns: &str,
    name: &str,
    body: &[u8],
    dry_run: bool,
) -> Result<Response, ApiError> {
    let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let dry_run = dry_run
        || options
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty());
    let pre = Preconditions::from_delete_options(&options);
    match shared.write(|s| s.delete(def, ns, name, &pre, dry_run))? {
        // apiserver: pods return the deleted object, most resources a success Status
        // (ReturnDeletedObject in pkg/registry/core/pod/storage/storage.go).
        Deleted::Gone(obj) if def.plural == "pods" && def.group.is_empty() => {
            Ok(json_response(200, &obj))
        }
        Deleted::Gone(obj) => {
            let mut details =
                json!({"name": name, "kind": def.plural, "uid": obj["metadata"]["uid"]});
            if !def.group.is_empty() {
                details["group"] = json!(def.group);
            }
            Ok(json_response(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
            ))
        }
        // apiserver: a deletion waiting on finalizers answers 202 Accepted with the object.
        Deleted::Pending(obj) => Ok(json_response(202, &obj)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let served = Served::default();
        let route = |path: &str| route(&served, path);
        assert!(matches!(
            route("/api/v1/nodes"),
            Ok(Route::Collection { ns: None, .. })
        ));
        assert!(matches!(
            route("/api/v1/pods"),
            Ok(Route::Collection { ns: None, .. })
        ));
        assert!(matches!(
            route("/api/v1/namespaces/default"),
            Ok(Route::Object { .. })
        ));
        assert!(matches!(
            route("/api/v1/namespaces/default/pods/p/eviction"),
            Ok(Route::Sub { .. })
        ));
        assert!(matches!(
            route("/apis/policy/v1/namespaces/a/poddisruptionbudgets/b/status"),
            Ok(Route::Sub { .. })
        ));
        assert!(route("/api/v1/pods/p").is_err());
        assert!(route("/api/v1/namespaces/a/nodes/n").is_err());
        assert!(route("/openapi/v2").is_err());
    }

    #[test]
    fn accept_negotiation() {
        assert!(accepts_plain_json(None));
        assert!(accepts_plain_json(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        )));
        assert!(!accepts_plain_json(Some(
            "application/json;as=Table;v=v1;g=meta.k8s.io"
        )));
        assert!(!accepts_plain_json(Some(
            "application/vnd.kubernetes.protobuf"
        )));
    }
}
