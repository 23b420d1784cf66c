//! The record of one request through the stub. Every request, refused or served,
//! ends by dropping its [`Exchange`], which writes one `audit.k8s.io/v1` event and
//! the request metrics — pingora's `logging()` phase.
//!
//! The record travels with the response: inside the response body (it is dropped
//! when the body ends or the client goes away) or inside an upgraded stream's pump
//! task, so a watch or an exec session is accounted for when it really ends.

use std::sync::Arc;

use causeway_model::cluster::ClusterId;
use http::StatusCode;
use prometheus::IntCounter;
use tokio::time::Instant;

use crate::audit::{AuditEvent, AuditLog, Stage};
use crate::authz::Verb;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::mux::session::AgentId;

/// One request's record; see the module docs.
pub struct Exchange {
    event: AuditEvent,
    audit: Option<Arc<AuditLog>>,
    metrics: Arc<Metrics>,
    started: Instant,
    /// Set once the cluster is known to be enrolled (bounded metric labels).
    cluster_label: Option<String>,
    verb: Verb,
    code: StatusCode,
    refusal: Option<(String, String)>,
    headers_sent: bool,
}

impl Exchange {
    /// Starts the record of a request.
    pub fn begin(
        event: AuditEvent,
        verb: Verb,
        audit: Option<Arc<AuditLog>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.open_streams.inc();
        Exchange {
            event,
            audit,
            metrics,
            started: Instant::now(),
            cluster_label: None,
            verb,
            code: StatusCode::INTERNAL_SERVER_ERROR,
            refusal: None,
            headers_sent: false,
        }
    }

    /// The audit ID.
    pub fn audit_id(&self) -> &str {
        &self.event.audit_id
    }

    /// Whether the request is long-running (watch, logs, exec, proxy, …), as the
    /// API server's `BasicLongRunningRequestCheck` counts it.
    pub fn is_long_running(&self) -> bool {
        self.event.is_long_running()
    }

    /// Records who is asking.
    pub fn set_user(&mut self, id: &Identity) {
        self.event.set_user(id);
    }

    /// Records the target cluster (as a metric label only once it is known to exist).
    pub fn set_cluster(&mut self, cluster: &ClusterId, known: bool) {
        self.event.set_cluster(cluster);
        if known {
            self.cluster_label = Some(cluster.to_string());
        }
    }

    /// Records a retry in the audit event: the request was lost with a connection of
    /// agent `from` before any response header and sent again to agent `on` (`None`:
    /// no other connection could take it). Still one event per request.
    pub fn set_retried(&mut self, from: &AgentId, on: Option<&AgentId>) {
        self.event.set_retry(from.as_str(), on.map(AgentId::as_str));
    }

    /// Whether the response headers went out (nothing may be retried after that).
    pub fn headers_sent(&self) -> bool {
        self.headers_sent
    }

    /// Records a refusal by the stub.
    pub fn refuse(&mut self, code: StatusCode, reason: &str, message: &str) {
        self.code = code;
        self.refusal = Some((reason.to_owned(), message.to_owned()));
    }

    /// Records the response status as the headers go out; a long-running request
    /// (watch, exec, logs, …) gets its `ResponseStarted` audit event now, so it is on
    /// record while it runs, not only when it ends.
    pub fn respond(&mut self, code: StatusCode) {
        self.code = code;
        self.headers_sent = true;
        if let Some(audit) = &self.audit
            && self.event.is_long_running()
        {
            audit.record(&self.event.at_stage(Stage::ResponseStarted, Some(code)));
        }
        let cluster = self.cluster_label.as_deref().unwrap_or("");
        self.metrics
            .headers
            .with_label_values(&[cluster, self.verb.as_str()])
            .observe(self.started.elapsed().as_secs_f64());
    }

    /// The byte counter of this request's cluster in one direction (`up` toward the
    /// cluster), resolved once so counting a body frame is one atomic add.
    pub fn byte_counter(&self, up: bool) -> IntCounter {
        let cluster = self.cluster_label.as_deref().unwrap_or("");
        self.metrics
            .bytes
            .with_label_values(&[cluster, if up { "up" } else { "down" }])
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.metrics.open_streams.dec();
        let cluster = self.cluster_label.as_deref().unwrap_or("");
        let verb = self.verb.as_str();
        self.metrics
            .requests
            .with_label_values(&[cluster, verb, self.code.as_str()])
            .inc();
        self.metrics
            .duration
            .with_label_values(&[cluster, verb])
            .observe(self.started.elapsed().as_secs_f64());
        if let Some(audit) = &self.audit {
            self.event
                .set_stage(Stage::ResponseComplete, Some(self.code));
            if let Some((reason, message)) = &self.refusal {
                self.event.set_refusal(reason, message);
            }
            audit.record(&self.event);
        }
        tracing::debug!(
            audit_id = %self.event.audit_id,
            user = %self.event.user.username,
            verb,
            cluster,
            code = self.code.as_u16(),
            elapsed_us = self.started.elapsed().as_micros() as u64,
            "request done"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditEvent;
    use std::time::Duration;

    fn stages(method: &http::Method, path: &str, query: Option<&str>) -> Vec<(String, u16)> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.log");
        let log = Arc::new(AuditLog::open(&file, 1 << 20, 1).unwrap());
        let event = AuditEvent::new("id", method, path, path, query);
        let mut ex = Exchange::begin(
            event,
            Verb::Get,
            Some(log.clone()),
            Arc::new(Metrics::new()),
        );
        ex.respond(StatusCode::OK);
        drop(ex);
        assert!(log.flush(Duration::from_secs(5)));
        std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let code = v["responseStatus"]["code"].as_u64().unwrap() as u16;
                (v["stage"].as_str().unwrap().to_owned(), code)
            })
            .collect()
    }

    #[test]
    fn long_running_requests_are_audited_when_they_start_and_end() {
        let both = [
            ("ResponseStarted".to_owned(), 200),
            ("ResponseComplete".to_owned(), 200),
        ];
        let get = http::Method::GET;
        let post = http::Method::POST;
        assert_eq!(stages(&get, "/api/v1/pods", Some("watch=true")), both);
        assert_eq!(
            stages(&post, "/api/v1/namespaces/a/pods/p/exec", None),
            both
        );
        assert_eq!(
            stages(&get, "/api/v1/namespaces/a/pods/p/log", Some("follow=true")),
            both
        );
        assert_eq!(
            stages(&post, "/api/v1/namespaces/a/pods/p/portforward", None),
            both
        );
        // Ordinary requests: one event, at the end.
        assert_eq!(
            stages(&get, "/api/v1/namespaces/a/pods", None),
            [("ResponseComplete".to_owned(), 200)]
        );
    }
}
