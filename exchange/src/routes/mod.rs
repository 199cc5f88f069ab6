//! The HTTP surface: thin handlers (parse, call a service, shape the reply) and the OpenAPI
//! document generated from them. Routes and schemas here are the public contract of DESIGN.md.

pub mod agent;
pub mod api_keys;
pub mod auth;
pub mod circuits;
pub mod funds;
pub mod market;
pub mod ops;
pub mod oracle;
pub mod page;
mod spec;
pub mod webhooks;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// The OpenAPI document's fixed parts; paths come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "pcx", description = "Proof-capacity exchange and pricing oracle. Amounts are decimal strings \
        with at most 6 decimals; times are RFC 3339 UTC; errors are `{\"error\": {\"code\", \"message\"}}`."),
    modifiers(&BearerAuth),
    components(schemas(crate::error::ErrorEnvelope, crate::service::setups::BuiltinCircuitView, circuits::ArtifactKind)),
    tags((name = "auth", description = "Accounts, API keys (list, create, revoke, rotate), tokens and wallet login"),
         (name = "funds", description = "Balances, ledger and withdrawals"),
         (name = "admin", description = "Operator routes"),
         (name = "provers", description = "Prover stake"),
         (name = "offers", description = "Offers (asks) and the public book"),
         (name = "market", description = "Discounts, quotes, contracts and slots"),
         (name = "circuits", description = "Circuits users bring (circom + snarkjs Groth16): registration, artifacts, keys, verifiers"),
         (name = "agents", description = "Prover agents: heartbeat, jobs, proofs"),
         (name = "oracle", description = "Signed price estimates: feeds, latest, curve, history, sources, stream"),
         (name = "webhooks", description = "Signed events as they happen (Standard Webhooks): endpoints, secrets, delivery attempts"),
         (name = "ops", description = "Health and metrics"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// Every route, with its OpenAPI description.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::register))
        .routes(routes!(auth::token))
        .routes(routes!(auth::nonce))
        .routes(routes!(auth::wallet))
        .routes(routes!(api_keys::list, api_keys::create))
        .routes(routes!(api_keys::revoke))
        .routes(routes!(api_keys::rotate))
        .routes(routes!(funds::me))
        .routes(routes!(funds::balances))
        .routes(routes!(funds::ledger))
        .routes(routes!(funds::withdraw))
        .routes(routes!(funds::deposit))
        .routes(routes!(funds::summary))
        .routes(routes!(market::stake))
        .routes(routes!(market::unstake))
        .routes(routes!(market::create_offer, market::list_offers))
        .routes(routes!(market::cancel_offer))
        .routes(routes!(circuits::register, circuits::list))
        .routes(routes!(circuits::get))
        .routes(routes!(circuits::artifact))
        .routes(routes!(circuits::verification_key))
        .routes(routes!(circuits::verifier_sol))
        .routes(routes!(market::discounts))
        .routes(routes!(market::create_quote))
        .routes(routes!(market::create_contract, market::list_contracts))
        .routes(routes!(market::get_contract))
        .routes(routes!(market::list_slots))
        .routes(routes!(market::put_slot_input))
        .routes(routes!(market::get_slot_proof))
        .routes(routes!(market::reputation))
        .routes(routes!(market::recent_slots))
        .routes(routes!(agent::heartbeat))
        .routes(routes!(agent::claim))
        .routes(routes!(agent::submit))
        .routes(routes!(agent::release))
        .routes(routes!(oracle::feeds))
        .routes(routes!(oracle::latest))
        .routes(routes!(oracle::curve))
        .routes(routes!(oracle::history))
        .routes(routes!(oracle::sources))
        .routes(routes!(oracle::signer))
        .routes(routes!(oracle::stream))
        .routes(routes!(oracle::halt))
        .routes(routes!(webhooks::register, webhooks::list))
        .routes(routes!(webhooks::get, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(ops::health))
        .routes(routes!(ops::metrics))
}

/// The OpenAPI document as served at `/openapi.json` and committed as `openapi/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router_and_openapi().1
}

/// The routes and their finished OpenAPI document (what [`crate::app`] serves).
pub fn router_and_openapi() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = api_router().split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    // The common answers are added to the JSON form (utoipa's builders have no "for every
    // operation"); the round trip is lossless, and the committed-spec test would show it if not.
    let with_common = serde_json::to_value(&doc).ok().and_then(|mut value| {
        spec::declare_common_responses(&mut value);
        serde_json::from_value(value).ok()
    });
    (router, with_common.unwrap_or(doc))
}

/// 404 for paths no route matches.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no such route; see /docs for the API")
}

/// 405 for known paths with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take this method; see /docs for the API")
}
