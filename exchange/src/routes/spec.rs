//! What every route may answer besides its own results, added to the generated OpenAPI document
//! in one place so that no handler can forget it: the extractors' rejections (`crate::extract`),
//! authentication, rate limits (`crate::ratelimit`), request deadlines (`crate::limits`) and a
//! database that does not answer. A client generated from the document, or a fuzzer checking
//! answers against it, then meets no status the document does not declare.
//!
//! A status the handler already declares keeps the handler's description (it is more specific).

use axum::http::Method;
use serde_json::{json, Map, Value};

use crate::ratelimit;

/// Idempotency keys as `crate::extract::IdempotencyKey` accepts them: 1 to 255 visible ASCII
/// characters (spaces inside).
const IDEMPOTENCY_KEY_SCHEMA: &str = r#"{"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]([ -~]*[!-~])?$"}"#;

/// Adds the common answers to every operation of `doc` (the document as JSON).
pub(super) fn declare_common_responses(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for (path, operations) in paths.iter_mut() {
        let Some(operations) = operations.as_object_mut() else { continue };
        for (method, operation) in operations.iter_mut() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET);
            declare_for(path, &method, operation);
        }
    }
}

fn declare_for(path: &str, method: &Method, operation: &mut Value) {
    let secured = operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    let json_body = operation.pointer("/requestBody/content/application~1json").is_some();
    let parameters = operation.get_mut("parameters").and_then(Value::as_array_mut);
    let (mut query_or_path, mut idempotent) = (false, false);
    for parameter in parameters.into_iter().flatten() {
        match parameter.get("in").and_then(Value::as_str) {
            Some("query" | "path") => query_or_path = true,
            Some("header") if parameter.get("name").and_then(Value::as_str) == Some("Idempotency-Key") => {
                idempotent = true;
                parameter["schema"] = serde_json::from_str(IDEMPOTENCY_KEY_SCHEMA).unwrap_or_default();
            }
            _ => {}
        }
    }

    let mut add: Vec<(&str, &str, bool)> = Vec::new();
    if json_body {
        add.push(("400", "malformed_json: the body is not JSON", false));
        add.push(("413", "payload_too_large: the body is over the size limit", false));
        add.push(("415", "unsupported_media_type: send `Content-Type: application/json`", false));
        add.push(("422", "invalid_body: a field is missing, unknown or of the wrong type, or a value is out of bounds", false));
    }
    if query_or_path {
        add.push(("422", "invalid_query or invalid_path: a parameter is malformed or out of bounds", false));
    }
    if idempotent {
        add.push((
            "422",
            "invalid_idempotency_key, or idempotency_key_reused (the key was used with another body)",
            false,
        ));
    }
    if secured {
        add.push(("401", "unauthenticated (no bearer token) or invalid_token (bad, expired, or its API key revoked)", false));
        add.push(("403", "forbidden: the route is not open to the caller's role", false));
    }
    if ratelimit::is_rate_limited(path, method) {
        add.push(("429", "rate_limited: too many requests from this address or account; see `Retry-After`", true));
    }
    // Metrics are served from memory, without a deadline or the database.
    if path != "/metrics" {
        if path != "/v1/oracle/stream" {
            add.push(("408", "request_timeout: the request took longer than its deadline", false));
        }
        add.push(("503", "unavailable: the database does not answer now; see `Retry-After`", true));
    }

    let responses = operation
        .as_object_mut()
        .map(|o| o.entry("responses").or_insert_with(|| Value::Object(Map::new())))
        .and_then(Value::as_object_mut);
    let Some(responses) = responses else { return };
    for (status, description, retry_after) in add {
        let response = responses.entry(status).or_insert_with(|| {
            json!({"description": "", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}})
        });
        let current = response.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
        if current.is_empty() {
            response["description"] = Value::String(description.to_owned());
        } else if !current.contains(description.split(':').next().unwrap_or(description)) {
            // Two sources of the same status (e.g. 422 from the body and from a parameter).
            response["description"] = Value::String(format!("{current}; {description}"));
        }
        if retry_after {
            response["headers"] = json!({"Retry-After": {
                "description": "Seconds after which a retry may succeed.",
                "schema": {"type": "integer", "minimum": 0}
            }});
        }
    }
}
