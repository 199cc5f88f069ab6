//! The committed `openapi/openapi.json` must match the code. To accept a change of the API run
//! `UPDATE_OPENAPI=1 cargo test -p pcx-exchange --test openapi` (or `pcx openapi > openapi/openapi.json`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[test]
fn committed_openapi_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let generated = pcx_exchange::routes::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date with the handlers; regenerate it with \
         `UPDATE_OPENAPI=1 cargo test -p pcx-exchange --test openapi`"
    );
}

/// Every parameter declared `in: path` names a `{placeholder}` of its path, and every
/// placeholder is declared: a client generated from the spec can call every route.
/// Generated clients name their functions by operationId: two operations with one id break them
/// (the TypeScript client's `operations` type would declare it twice).
#[test]
fn operation_ids_are_unique() {
    let spec: serde_json::Value = serde_json::from_str(&pcx_exchange::routes::openapi().to_json().unwrap()).unwrap();
    let mut seen = std::collections::HashMap::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            if let Some(other) = seen.insert(id.to_owned(), format!("{method} {path}")) {
                panic!("operationId `{id}` of {method} {path} is also {other}'s");
            }
        }
    }
}

#[test]
fn path_parameters_are_the_paths_placeholders() {
    let spec: serde_json::Value = serde_json::from_str(&pcx_exchange::routes::openapi().to_json().unwrap()).unwrap();
    let mut wrong = Vec::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        let placeholders: Vec<&str> =
            path.split('{').skip(1).filter_map(|rest| rest.split('}').next()).collect();
        for (method, operation) in operations.as_object().unwrap() {
            let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
            let in_path: Vec<String> = parameters
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            for name in &in_path {
                if !placeholders.contains(&name.as_str()) {
                    wrong.push(format!("{method} {path}: `{name}` is declared in: path but is not in the path"));
                }
            }
            for placeholder in &placeholders {
                if !in_path.iter().any(|n| n == placeholder) {
                    wrong.push(format!("{method} {path}: {{{placeholder}}} is not declared as a path parameter"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every `$ref` names a schema the document defines (a client generator, or a fuzzer reading
/// the spec, fails on one that does not).
#[test]
fn every_schema_reference_resolves() {
    let spec: serde_json::Value = serde_json::from_str(&pcx_exchange::routes::openapi().to_json().unwrap()).unwrap();
    let defined = spec["components"]["schemas"].as_object().cloned().unwrap_or_default();
    let mut missing = Vec::new();
    let mut stack = vec![&spec];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                    let name = target.trim_start_matches("#/components/schemas/");
                    if !defined.contains_key(name) {
                        missing.push(target.clone());
                    }
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "unresolved references: {missing:?}");
}

/// A list's `limit` says its bounds in the spec, as the server enforces them (a client or a
/// fuzzer reading the spec knows what will be refused).
#[test]
fn list_limits_are_bounded_in_the_spec() {
    let spec: serde_json::Value = serde_json::from_str(&pcx_exchange::routes::openapi().to_json().unwrap()).unwrap();
    let mut unbounded = Vec::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().cloned().unwrap_or_default() {
                if parameter["name"] == "limit" {
                    let schema = &parameter["schema"];
                    if schema["maximum"].is_null() || schema["minimum"] != 1 {
                        unbounded.push(format!("{method} {path}: {schema}"));
                    }
                }
            }
        }
    }
    assert!(unbounded.is_empty(), "{}", unbounded.join("\n"));
}

/// The bounds the document declares on request fields are the ones the server enforces (a
/// client validating against the spec sends nothing the server refuses for its size, and
/// nothing the server accepts is outside the spec).
#[test]
fn declared_bounds_are_the_servers() {
    let spec: serde_json::Value = serde_json::from_str(&pcx_exchange::routes::openapi().to_json().unwrap()).unwrap();
    let field = |schema: &str, name: &str| spec["components"]["schemas"][schema]["properties"][name].clone();
    let bounds = |schema: &str, name: &str| {
        let f = field(schema, name);
        (f["minimum"].as_u64(), f["maximum"].as_u64())
    };
    assert_eq!(bounds("ProofClass", "deadline_secs"), (Some(1), Some(u64::from(pcx_domain::proof_class::MAX_DEADLINE_SECS))));
    assert_eq!(bounds("ProofClass", "size_log2").1, Some(u64::from(pcx_prover_pool::hash_chain::MAX_SIZE_LOG2)));
    assert_eq!(bounds("Schedule", "every_secs").0, Some(1));
    assert_eq!(
        bounds("QuoteRequest", "proofs_per_slot"),
        (Some(1), Some(u64::from(pcx_exchange::service::contracts::MAX_PROOFS_PER_SLOT)))
    );
    assert_eq!(bounds("QuoteRequest", "redundancy").1, Some(u64::from(pcx_exchange::service::contracts::MAX_REDUNDANCY)));
    assert_eq!(
        bounds("OfferInput", "proofs_per_hour"),
        (Some(1), Some(u64::from(pcx_exchange::service::offers::MAX_PROOFS_PER_HOUR)))
    );
    let money = &spec["components"]["schemas"]["Money"]["pattern"];
    assert!(money.as_str().is_some_and(|p| p.contains("{1,6}")), "amounts declare their 6 decimals: {money}");
}

/// Every operation declares the answers every route may give: authentication on secured routes,
/// the JSON extractor's rejections on routes with a body, parameter errors, rate limits, request
/// deadlines and an unavailable database (so a spec-checking client meets no undeclared status).
#[test]
fn operations_declare_the_common_answers() {
    let spec: serde_json::Value = serde_json::from_str(&pcx_exchange::routes::openapi().to_json().unwrap()).unwrap();
    let mut missing = Vec::new();
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let mut expect: Vec<&str> = Vec::new();
            if operation["security"].as_array().is_some_and(|s| !s.is_empty()) {
                expect.extend(["401", "403"]);
            }
            if operation["requestBody"]["content"]["application/json"].is_object() {
                expect.extend(["400", "413", "415", "422"]);
            }
            if operation["parameters"].as_array().is_some_and(|ps| ps.iter().any(|p| p["in"] == "query" || p["in"] == "path")) {
                expect.push("422");
            }
            if path != "/metrics" {
                expect.push("503");
                assert!(responses["503"]["headers"]["Retry-After"].is_object(), "{method} {path}: 503 without Retry-After");
            }
            if path.starts_with("/v1/auth/") || path.starts_with("/v1/oracle/") && method == "get" {
                expect.push("429");
            }
            for status in expect {
                if !responses.contains_key(status) {
                    missing.push(format!("{method} {path}: {status}"));
                }
            }
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["name"] == "Idempotency-Key" {
                    assert_eq!(parameter["schema"]["maxLength"], 255, "{method} {path}: Idempotency-Key bounds");
                }
            }
        }
    }
    assert!(missing.is_empty(), "undeclared answers: {missing:#?}");
}

/// The stream's events have their own schema: each kind of message with its data.
#[test]
fn the_stream_declares_its_events() {
    let spec: serde_json::Value = serde_json::from_str(&pcx_exchange::routes::openapi().to_json().unwrap()).unwrap();
    let content = &spec["paths"]["/v1/oracle/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"];
    assert_eq!(content["schema"]["$ref"], "#/components/schemas/StreamEvent");
    let kinds: Vec<String> = spec["components"]["schemas"]["StreamEvent"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|variant| variant["properties"]["event"]["enum"].as_array().cloned().unwrap_or_default())
        .map(|kind| kind.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["round", "status", "heartbeat"]);
}
