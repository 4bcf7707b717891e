//! Fault injection: HTTP errors and latency per endpoint, failed jobs.
//!
//! Dead servers live in the model itself (see `Datacenter::set_server_dead`)
//! because they change VM and server state, not just responses.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::ids::SplitMix64;

/// Which API zone a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Sapi,
    Vmapi,
    Cnapi,
    Imgapi,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Sapi => "sapi",
            Api::Vmapi => "vmapi",
            Api::Cnapi => "cnapi",
            Api::Imgapi => "imgapi",
        }
    }
}

/// A rule matching requests. `path` is a pattern over `/`-separated
/// segments: `*` matches one segment, a trailing `**` matches the rest
/// (including nothing). An absent `path` matches everything.
///
/// When a matching rule fires (always, or with `probability`), its
/// `latency_ms` is added before the response, and if `status` is set the
/// request is answered with that error instead. `count` limits how many
/// times the rule fires; it is removed once spent. Latency is wall time, not
/// scaled: it models the network, not a simulated operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<Api>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Defaults by status (500 InternalError, 503 ServiceUnavailableError, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    pub latency_ms: u64,
}

impl FaultRule {
    /// Fail `count` requests to `api` matching `method` and `path` with `status`.
    pub fn error(api: Api, method: &str, path: &str, status: u16, count: u32) -> Self {
        FaultRule {
            api: Some(api),
            method: Some(method.to_string()),
            path: Some(path.to_string()),
            status: Some(status),
            count: Some(count),
            ..Default::default()
        }
    }

    /// Delay every request to `api` matching `path` by `latency`.
    pub fn latency(api: Api, path: &str, latency: Duration) -> Self {
        FaultRule {
            api: Some(api),
            path: Some(path.to_string()),
            latency_ms: latency.as_millis() as u64,
            ..Default::default()
        }
    }

    pub fn with_probability(mut self, p: f64) -> Self {
        self.probability = Some(p);
        self
    }

    pub fn with_message(mut self, code: &str, message: &str) -> Self {
        self.code = Some(code.to_string());
        self.message = Some(message.to_string());
        self
    }

    fn matches(&self, api: Api, method: &str, path: &str) -> bool {
        if self.api.is_some_and(|a| a != api) {
            return false;
        }
        if let Some(m) = &self.method
            && !m.eq_ignore_ascii_case(method)
        {
            return false;
        }
        match &self.path {
            None => true,
            Some(p) => path_matches(p, path),
        }
    }

    fn to_error(&self, status: u16) -> ApiError {
        let default_code = match status {
            400 => "BadRequest",
            404 => "ResourceNotFound",
            409 => "Conflict",
            422 => "ValidationFailed",
            503 => "ServiceUnavailableError",
            _ => "InternalError",
        };
        ApiError::new(
            status,
            self.code.as_deref().unwrap_or(default_code),
            self.message.as_deref().unwrap_or("injected fault"),
        )
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let mut i = 0;
    for (pi, p) in pat.iter().enumerate() {
        if *p == "**" && pi == pat.len() - 1 {
            return true;
        }
        match segs.get(i) {
            Some(s) if *p == "*" || p == s => i += 1,
            _ => return false,
        }
    }
    i == segs.len()
}

/// An installed rule and what is left of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstalledFault {
    pub id: u64,
    pub rule: FaultRule,
    pub remaining: Option<u32>,
    pub fired: u64,
}

/// What to do to one request.
#[derive(Debug, Default)]
pub struct FaultDecision {
    pub latency: Duration,
    pub error: Option<ApiError>,
}

/// Jobs told to fail, consumed in creation order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobFailure {
    /// Only jobs of this task (`provision`, `reprovision`, ...); any if `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub remaining: u32,
    pub message: String,
}

#[derive(Debug)]
pub struct Faults {
    rules: Vec<InstalledFault>,
    next_id: u64,
    rng: SplitMix64,
    job_failures: VecDeque<JobFailure>,
}

impl Faults {
    pub fn new(seed: u64) -> Self {
        Faults {
            rules: Vec::new(),
            next_id: 1,
            rng: SplitMix64::new(seed ^ 0x5eed_fa17),
            job_failures: VecDeque::new(),
        }
    }

    pub fn add(&mut self, rule: FaultRule) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.rules.push(InstalledFault {
            id,
            remaining: rule.count,
            rule,
            fired: 0,
        });
        id
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        before != self.rules.len()
    }

    pub fn clear(&mut self) {
        self.rules.clear();
        self.job_failures.clear();
    }

    pub fn list(&self) -> Vec<InstalledFault> {
        self.rules.clone()
    }

    /// Decide the fate of one request, spending counts and rolling dice.
    pub fn decide(&mut self, api: Api, method: &str, path: &str) -> FaultDecision {
        let mut out = FaultDecision::default();
        for r in self.rules.iter_mut() {
            if !r.rule.matches(api, method, path) {
                continue;
            }
            if let Some(p) = r.rule.probability
                && self.rng.next_f64() >= p
            {
                continue;
            }
            out.latency += Duration::from_millis(r.rule.latency_ms);
            if let Some(status) = r.rule.status {
                if out.error.is_some() {
                    // An earlier rule already answers; do not spend this one.
                    continue;
                }
                out.error = Some(r.rule.to_error(status));
            }
            r.fired += 1;
            if let Some(n) = r.remaining.as_mut() {
                *n = n.saturating_sub(1);
            }
        }
        self.rules.retain(|r| r.remaining != Some(0));
        out
    }

    pub fn fail_next_jobs(&mut self, count: u32, task: Option<String>, message: String) {
        if count > 0 {
            self.job_failures.push_back(JobFailure {
                task,
                remaining: count,
                message,
            });
        }
    }

    pub fn pending_job_failures(&self) -> Vec<JobFailure> {
        self.job_failures.iter().cloned().collect()
    }

    /// Called once per created job: the failure message if it must fail.
    pub fn take_job_failure(&mut self, task: &str) -> Option<String> {
        let idx = self
            .job_failures
            .iter()
            .position(|f| f.task.as_deref().is_none_or(|t| t == task))?;
        let f = &mut self.job_failures[idx];
        f.remaining -= 1;
        let msg = f.message.clone();
        if f.remaining == 0 {
            self.job_failures.remove(idx);
        }
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        assert!(path_matches("/vms", "/vms"));
        assert!(path_matches("/vms/*", "/vms/abc"));
        assert!(!path_matches("/vms/*", "/vms"));
        assert!(!path_matches("/vms/*", "/vms/a/b"));
        assert!(path_matches("/vms/**", "/vms"));
        assert!(path_matches("/vms/**", "/vms/a/b"));
        assert!(path_matches("/**", "/anything/at/all"));
        assert!(!path_matches("/jobs/*", "/vms/x"));
    }

    #[test]
    fn counted_rule_fires_then_disappears() {
        let mut f = Faults::new(1);
        f.add(FaultRule::error(Api::Vmapi, "GET", "/vms", 503, 2));
        for _ in 0..2 {
            let d = f.decide(Api::Vmapi, "get", "/vms");
            assert_eq!(d.error.unwrap().status, 503);
        }
        assert!(f.decide(Api::Vmapi, "GET", "/vms").error.is_none());
        assert!(f.list().is_empty());
    }

    #[test]
    fn other_api_or_method_does_not_match() {
        let mut f = Faults::new(1);
        f.add(FaultRule::error(Api::Sapi, "PUT", "/instances/*", 500, 1));
        assert!(f.decide(Api::Vmapi, "PUT", "/instances/x").error.is_none());
        assert!(f.decide(Api::Sapi, "GET", "/instances/x").error.is_none());
        assert!(f.decide(Api::Sapi, "PUT", "/instances/x").error.is_some());
    }

    #[test]
    fn probability_is_seeded() {
        let run = |seed| {
            let mut f = Faults::new(seed);
            f.add(FaultRule::error(Api::Cnapi, "GET", "/**", 500, u32::MAX).with_probability(0.3));
            (0..200)
                .map(|_| f.decide(Api::Cnapi, "GET", "/servers").error.is_some())
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42));
        let hits = a.iter().filter(|b| **b).count();
        assert!((30..90).contains(&hits), "{hits}");
    }

    #[test]
    fn job_failures_by_task() {
        let mut f = Faults::new(1);
        f.fail_next_jobs(1, Some("reprovision".into()), "boom".into());
        f.fail_next_jobs(2, None, "any".into());
        assert_eq!(f.take_job_failure("provision").as_deref(), Some("any"));
        assert_eq!(f.take_job_failure("reprovision").as_deref(), Some("boom"));
        assert_eq!(f.take_job_failure("reprovision").as_deref(), Some("any"));
        assert_eq!(f.take_job_failure("start"), None);
    }
}
