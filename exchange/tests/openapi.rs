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
