//! Fault injection: answer chosen requests with a chosen status before the fake looks at them.

/// One pending rule: the next `remaining` matching requests answer `status`.
#[derive(Debug)]
struct Rule {
    status: u16,
    remaining: usize,
    /// Upper-case method, or any.
    method: Option<String>,
    /// Matched against the raw request path, or any.
    path_suffix: Option<String>,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    all: Option<u16>,
    rules: Vec<Rule>,
}

/// Panics unless `status` can be an HTTP status (100..=999).
fn checked(status: u16) -> u16 {
    assert!(
        (100..=999).contains(&status),
        "fake-servicebus cannot answer with HTTP status {status}"
    );
    status
}

impl Faults {
    pub(crate) fn fail_all(&mut self, status: Option<u16>) {
        self.all = status.map(checked);
    }

    pub(crate) fn fail_next(
        &mut self,
        method: Option<&str>,
        path_suffix: Option<&str>,
        status: u16,
        times: usize,
    ) {
        if times == 0 {
            return;
        }
        self.rules.push(Rule {
            status: checked(status),
            remaining: times,
            method: method
                .filter(|m| !m.is_empty() && *m != "*")
                .map(str::to_ascii_uppercase),
            path_suffix: path_suffix.filter(|p| !p.is_empty()).map(str::to_string),
        });
    }

    pub(crate) fn clear(&mut self) {
        self.all = None;
        self.rules.clear();
    }

    /// The status to inject for this request, if any; counts it against the first matching
    /// rule (rules apply in the order they were added).
    pub(crate) fn take(&mut self, method: &str, path: &str) -> Option<u16> {
        if let Some(status) = self.all {
            return Some(status);
        }
        let rule = self.rules.iter_mut().find(|r| {
            r.method.as_deref().is_none_or(|m| m == method)
                && r.path_suffix.as_deref().is_none_or(|s| path.ends_with(s))
        })?;
        rule.remaining -= 1;
        let status = rule.status;
        self.rules.retain(|r| r.remaining > 0);
        Some(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_count_down_and_filter() {
        let mut f = Faults::default();
        f.fail_next(Some("post"), Some("/messages/head"), 503, 2);
        f.fail_next(None, None, 500, 1);
        assert_eq!(f.take("POST", "/q/messages/head"), Some(503));
        assert_eq!(f.take("DELETE", "/q/messages/1/t"), Some(500));
        assert_eq!(f.take("DELETE", "/q/messages/1/t"), None);
        assert_eq!(f.take("POST", "/q/messages"), None);
        assert_eq!(f.take("POST", "/q/messages/head"), Some(503));
        assert_eq!(f.take("POST", "/q/messages/head"), None);
        f.fail_all(Some(401));
        assert_eq!(f.take("GET", "/"), Some(401));
        f.fail_all(None);
        f.fail_next(Some("*"), None, 429, 5);
        f.clear();
        assert_eq!(f.take("GET", "/"), None);
    }

    #[test]
    #[should_panic(expected = "cannot answer with HTTP status 42")]
    fn nonsense_statuses_are_refused() {
        Faults::default().fail_next(None, None, 42, 1);
    }
}
