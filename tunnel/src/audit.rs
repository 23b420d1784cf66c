//! Audit: one `audit.k8s.io/v1` `Event` per request stage, as JSON lines in a
//! size-rotated file, so Falco/SIEM pipelines that read kube-apiserver audit logs read
//! ours unchanged.
//!
//! - [`event`]: the event schema and the request's `Audit-ID`.
//! - [`writer`]: the rotating log file and its writer thread ([`AuditLog`]).

pub mod event;
pub mod writer;

pub use event::{
    AUDIT_ID_HEADER, AuditEvent, CLUSTER_ANNOTATION, MAX_AUDIT_ID_LEN, ObjectReference,
    ResponseStatus, Stage, UserInfo, audit_id, new_audit_id, valid_audit_id,
};
pub use writer::{AuditError, AuditLog, MAX_PENDING_BYTES, WAKE_BYTES, WRITE_INTERVAL};

#[cfg(test)]
mod tests;
