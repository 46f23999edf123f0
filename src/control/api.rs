//! The HTTP API as a pure function: a request (method, target, body) in,
//! a response (status, content type, body) out. The socket side is
//! `server.rs`; this file is the routing and every refusal, testable
//! without sockets.
//!
//! Invariant: every request gets an answer; every refusal is a 4xx (or a
//! 503 when no node is in the ring) with `{"error":CODE,"message":TEXT}`,
//! and its code is counted in `rtc_lb_requests_refused_total`.

use super::{
    heartbeat::Heartbeat,
    membership::MembershipError,
    service::{Control, LookupError},
};
use crate::protocol::valid_user_id;

/// Largest request body accepted, in bytes (a heartbeat is ~300).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct ApiRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// Path and query, as sent (`/api/v1/resolve?userId=alice`).
    pub target: &'a str,
    /// The body (at most [`MAX_BODY_BYTES`]; see [`ApiResponse::too_large`]).
    pub body: &'a [u8],
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// `Allow`, for a 405.
    pub allow: Option<&'static str>,
    /// The `error` code, when this is a refusal.
    pub error: Option<&'static str>,
}

const JSON: &str = "application/json";

impl ApiResponse {
    fn json(status: u16, body: String) -> ApiResponse {
        ApiResponse {
            status,
            content_type: JSON,
            body,
            allow: None,
            error: None,
        }
    }

    /// `{"error":code,"message":message}` with `status`.
    pub fn error(status: u16, code: &'static str, message: &str) -> ApiResponse {
        let mut r = ApiResponse::json(
            status,
            serde_json::json!({ "error": code, "message": message }).to_string(),
        );
        r.error = Some(code);
        r
    }

    /// The answer to a body over [`MAX_BODY_BYTES`].
    pub fn too_large() -> ApiResponse {
        ApiResponse::error(
            413,
            "body_too_large",
            &format!("the body is over {MAX_BODY_BYTES} bytes"),
        )
    }
}

/// Answers one request (and counts it when it is a refusal).
pub fn handle(control: &Control, req: &ApiRequest<'_>) -> ApiResponse {
    let response = route(control, req);
    if let Some(code) = response.error {
        control.refused(code);
    }
    response
}

fn route(control: &Control, req: &ApiRequest<'_>) -> ApiResponse {
    let (path, query) = req.target.split_once('?').unwrap_or((req.target, ""));
    let allow = match path {
        "/api/v1/nodes/heartbeat" => "POST",
        "/api/v1/ring" | "/api/v1/resolve" | "/api/v1/connect" | "/api/v1/scaling" | "/health"
        | "/metrics" => "GET",
        _ => {
            return ApiResponse::error(
                404,
                "not_found",
                &format!("no such path: {}", path.escape_default()),
            )
        }
    };
    if req.method != allow && !(allow == "GET" && req.method == "HEAD") {
        let mut r = ApiResponse::error(405, "method_not_allowed", &format!("{path} takes {allow}"));
        r.allow = Some(allow);
        return r;
    }
    match path {
        "/api/v1/nodes/heartbeat" => heartbeat(control, req.body),
        "/api/v1/ring" => ApiResponse::json(200, control.ring_json()),
        "/api/v1/resolve" => match user_of(query) {
            Err(r) => r,
            Ok((user, _)) => match control.resolve(&user) {
                Ok(r) => ApiResponse::json(200, to_json(&r)),
                Err(e) => lookup_error(e),
            },
        },
        "/api/v1/connect" => match user_of(query) {
            Err(r) => r,
            Ok((user, resume)) => {
                if let Some(node) = unreachable_of(query) {
                    control.report_unreachable(&node);
                }
                match control.connect(&user, resume.as_deref()) {
                    Ok(c) => ApiResponse::json(200, to_json(&c)),
                    Err(e) => lookup_error(e),
                }
            }
        },
        "/api/v1/scaling" => ApiResponse::json(200, to_json(&control.scaling())),
        "/health" => ApiResponse::json(200, control.health_json()),
        _ => ApiResponse {
            status: 200,
            content_type: "text/plain; version=0.0.4",
            body: control.metrics_text(),
            allow: None,
            error: None,
        },
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("API types encode")
}

fn heartbeat(control: &Control, body: &[u8]) -> ApiResponse {
    control.heartbeat_received();
    let hb = match Heartbeat::parse(body) {
        Ok(hb) => hb,
        Err(e) => return ApiResponse::error(400, e.code(), &e.to_string()),
    };
    match control.heartbeat(&hb) {
        Ok(reply) => ApiResponse::json(200, to_json(&reply)),
        Err(e @ MembershipError::UnknownNode(_)) => {
            ApiResponse::error(404, "unknown_node", &e.to_string())
        }
        Err(e @ MembershipError::Ring(_)) => {
            ApiResponse::error(409, "ring_refused", &e.to_string())
        }
        Err(e @ MembershipError::Persist { .. }) => {
            tracing::error!("{e}");
            ApiResponse::error(503, "state_unwritable", &e.to_string())
        }
    }
}

/// The checked `userId` of a query, and its `resume` token if any.
fn user_of(query: &str) -> Result<(String, Option<String>), ApiResponse> {
    let mut user = None;
    let mut resume = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "userId" => user = Some(v.into_owned()),
            "resume" => resume = Some(v.into_owned()).filter(|r| !r.is_empty()),
            _ => {}
        }
    }
    let user = user
        .ok_or_else(|| ApiResponse::error(400, "missing_user_id", "the query needs `userId=`"))?;
    if !valid_user_id(&user) {
        return Err(ApiResponse::error(
            400,
            "invalid_user_id",
            "`userId` must be 1-128 bytes of ASCII letters, digits and -_.@:+=",
        ));
    }
    Ok((user, resume))
}

/// `unreachable=NODE` of a `connect`: the node the client failed on.
fn unreachable_of(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k == "unreachable" && !v.is_empty() && v.len() <= 128)
        .map(|(_, v)| v.into_owned())
}

fn lookup_error(e: LookupError) -> ApiResponse {
    match e {
        LookupError::NoNodes => ApiResponse::error(503, "no_nodes", &e.to_string()),
        LookupError::Resume(_) => ApiResponse::error(400, "resume_refused", &e.to_string()),
        LookupError::Sign(_) => ApiResponse::error(500, "internal", &e.to_string()),
    }
}

#[cfg(test)]
#[path = "api_tests.rs"]
mod tests;
