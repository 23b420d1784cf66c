//! Kubernetes `metav1.Status` error bodies, so kubectl prints our refusals the way it
//! prints the API server's.
//!
//! From the Kubernetes API conventions: "Status is a return value for calls that don't
//! return other objects." kubectl shows `Error from server (<reason>): <message>`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

/// The JSON body of a `metav1.Status` failure.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Always `Status`.
    pub kind: &'static str,
    /// Always `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    /// Always empty.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Always `Failure` (we only build errors).
    pub status: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Machine-readable `StatusReason` (`Unauthorized`, `Forbidden`, `NotFound`, …).
    pub reason: String,
    /// The HTTP status code, repeated.
    pub code: u16,
}

impl Status {
    /// A failure with the given code, reason and message.
    pub fn failure(code: StatusCode, reason: &str, message: &str) -> Self {
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: serde_json::Map::new(),
            status: "Failure",
            message: message.to_owned(),
            reason: reason.to_owned(),
            code: code.as_u16(),
        }
    }
}

/// The usual `StatusReason` for an HTTP code (`401` → `Unauthorized`, …).
pub fn reason_for(code: StatusCode) -> &'static str {
    match code.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "RequestEntityTooLarge",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

/// A complete HTTP response carrying a `metav1.Status` JSON body.
///
/// `reason` is a Kubernetes `StatusReason` such as `Forbidden` (see [`reason_for`]);
/// `message` is what kubectl prints after `Error from server (<reason>):`.
pub fn status_response(code: StatusCode, reason: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&Status::failure(code, reason, message))
        // Serializing a struct of strings and integers cannot fail.
        .unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn body_is_a_metav1_status() {
        let cases = [
            (StatusCode::UNAUTHORIZED, "Unauthorized", "no credentials"),
            (StatusCode::FORBIDDEN, "Forbidden", "alice may not \"x\""),
            (
                StatusCode::NOT_FOUND,
                "NotFound",
                "cluster idc-x is unknown",
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "no agent",
            ),
        ];
        for (code, reason, message) in cases {
            let resp = status_response(code, reason, message);
            assert_eq!(resp.status(), code);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["kind"], "Status");
            assert_eq!(v["apiVersion"], "v1");
            assert_eq!(v["status"], "Failure");
            assert_eq!(v["reason"], reason);
            assert_eq!(v["message"], message);
            assert_eq!(v["code"], code.as_u16());
            assert!(v["metadata"].as_object().unwrap().is_empty());
            assert_eq!(reason_for(code), reason);
        }
    }
}
