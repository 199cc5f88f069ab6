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
