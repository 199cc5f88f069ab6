//! Health, metrics, OpenAPI and Swagger UI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::spawn_app;

#[tokio::test]
async fn health_checks_the_database() {
    let app = spawn_app().await;
    let reply = app.get("/health", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["database"], "ok");

    app.db.close().await;
    let down = app.get("/health", None).await;
    down.assert_error(503, "unavailable");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = spawn_app().await;
    app.get("/health", None).await;
    app.get("/health", None).await;
    app.get("/v1/accounts/me", None).await;
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains(r#"pcx_http_requests_total{method="GET",route="/health",status="200"} 2"#), "{text}");
    assert!(text.contains(r#"pcx_http_requests_total{method="GET",route="/v1/accounts/me",status="401"} 1"#), "{text}");
    assert!(text.contains(r#"pcx_http_request_duration_seconds_bucket{method="GET",route="/health",status="200",le="+Inf"} 2"#));
}

#[tokio::test]
async fn openapi_and_swagger_ui_are_served() {
    let app = spawn_app().await;
    let spec = app.get("/openapi.json", None).await;
    assert_eq!(spec.status, 200);
    assert!(spec.body["paths"]["/v1/withdrawals"]["post"].is_object());
    assert_eq!(spec.body, serde_json::to_value(pcx_exchange::routes::openapi()).unwrap());
    let docs = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
}

#[tokio::test]
async fn invented_methods_and_paths_do_not_grow_the_metrics() {
    let app = common::spawn_app().await;
    for i in 0..30 {
        let method = reqwest::Method::from_bytes(format!("M{i}X").as_bytes()).unwrap();
        app.http.request(method, app.url("/health")).send().await.unwrap();
        app.http.get(app.url(&format!("/no/such/path/{i}"))).send().await.unwrap();
    }
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let series = text.lines().filter(|l| l.starts_with("pcx_http_requests_total{")).count();
    assert!(series <= 6, "{series} series from 60 odd requests:\n{text}");
    assert!(!text.contains("M1X") && !text.contains("/no/such"), "{text}");
}
