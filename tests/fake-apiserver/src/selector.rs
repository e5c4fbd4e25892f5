//! Label selectors (query string and `LabelSelector` objects) and field selectors.

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::resources::ResourceDef;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; an empty one matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

/// Splits on commas that are not inside `( … )`.
fn split_terms(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl LabelSelector {
    // apiserver: selector grammar of k8s.io/apimachinery/pkg/labels/selector.go
    // (`k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`).
    pub(crate) fn parse(s: &str) -> Result<Self, ApiError> {
        let bad = |t: &str| ApiError::bad_request(format!("unable to parse requirement: {t:?}"));
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector(reqs));
        }
        for term in split_terms(s) {
            let t = term.trim();
            if t.is_empty() {
                return Err(bad(t));
            }
            if let Some(key) = t.strip_prefix('!') {
                reqs.push(Requirement::NotExists(key.trim().to_string()));
            } else if let Some(open) = t.find('(') {
                let mut words = t[..open].split_whitespace();
                let (Some(key), Some(op), None) = (words.next(), words.next(), words.next()) else {
                    return Err(bad(t));
                };
                let values = parse_set(&t[open..]).ok_or_else(|| bad(t))?;
                match op {
                    "in" => reqs.push(Requirement::In(key.to_string(), values)),
                    "notin" => reqs.push(Requirement::NotIn(key.to_string(), values)),
                    _ => return Err(bad(t)),
                }
            } else if let Some((k, v)) = t.split_once("!=") {
                reqs.push(Requirement::NotEq(
                    k.trim().to_string(),
                    v.trim().to_string(),
                ));
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                reqs.push(Requirement::Eq(k.trim().to_string(), v.trim().to_string()));
            } else {
                reqs.push(Requirement::Exists(t.to_string()));
            }
        }
        let valid = |t: &str| {
            !t.is_empty() && !t.contains(|c: char| c.is_whitespace() || "=!(),".contains(c))
        };
        for r in &reqs {
            let (key, values): (&str, Vec<&str>) = match r {
                Requirement::Eq(k, v) | Requirement::NotEq(k, v) => (k, vec![v]),
                Requirement::In(k, vs) | Requirement::NotIn(k, vs) => {
                    (k, vs.iter().map(String::as_str).collect())
                }
                Requirement::Exists(k) | Requirement::NotExists(k) => (k, vec![]),
            };
            // Label values may be empty; keys may not, and neither may hold selector syntax.
            if !valid(key) || values.iter().any(|v| !v.is_empty() && !valid(v)) {
                return Err(bad(s));
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Converts a `metav1.LabelSelector` object. `None` for a null selector or one that does not
    /// parse — callers decide what that means.
    pub(crate) fn from_object(sel: &Value) -> Option<Self> {
        let obj = sel.as_object()?;
        let mut reqs = Vec::new();
        if let Some(labels) = obj.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                reqs.push(Requirement::Eq(k.clone(), v.as_str()?.to_string()));
            }
        }
        for expr in obj
            .get("matchExpressions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = expr.get("key")?.as_str()?.to_string();
            let values: Vec<String> = expr
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            reqs.push(match expr.get("operator")?.as_str()? {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::NotExists(key),
                _ => return None,
            });
        }
        Some(LabelSelector(reqs))
    }

    pub(crate) fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }

    pub(crate) fn matches_object(&self, obj: &Value) -> bool {
        self.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
    }
}

/// A parsed field selector: `field=value`, `field==value`, `field!=value`, comma-joined.
#[derive(Debug, Clone, Default)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

/// The field's value as the apiserver's field set renders it; a missing field is "".
fn field_value(obj: &Value, field: &str) -> String {
    let pointer = format!("/{}", field.replace('.', "/"));
    match obj.pointer(&pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

impl FieldSelector {
    pub(crate) fn parse(s: &str, def: &ResourceDef) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                )));
            };
            let field = field.trim();
            // apiserver: an unknown field label is a 400 (pkg/registry/*/strategy.go GetAttrs).
            if !def.field_labels.contains(&field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            reqs.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.0
            .iter()
            .all(|(f, eq, v)| (field_value(obj, f) == *v) == *eq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_grammar() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches_object(&obj);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(m("app!=db"));
        assert!(m("!missing"));
        assert!(m("app in (web, db),tier notin (back)"));
        assert!(!m("app=db"));
        assert!(!m("missing"));
        assert!(!m("app notin (web)"));
        assert!(LabelSelector::parse("app in web").is_err());
    }

    #[test]
    fn label_selector_objects() {
        let labels = json!({"metadata": {"labels": {"app": "web"}}});
        let sel = json!({"matchLabels": {"app": "web"},
                         "matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]});
        assert!(
            LabelSelector::from_object(&sel)
                .unwrap()
                .matches_object(&labels)
        );
        assert!(
            LabelSelector::from_object(&json!({}))
                .unwrap()
                .matches_object(&labels)
        );
        assert!(LabelSelector::from_object(&Value::Null).is_none());
    }
}
