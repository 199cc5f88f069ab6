//! Prometheus metrics of the HTTP API: request counts and latency histograms by route and status.
//!
//! Routes are labelled by their template (`/v1/contracts/{id}`), never the raw path, so the number
//! of series stays bounded; requests that match no route share the label `unmatched`, and methods
//! other than the standard ones share `other`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_MICROS: [u64; 12] =
    [1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000];

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum_micros: u64,
    buckets: [u64; BUCKETS_MICROS.len()],
}

/// The registry of request metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    /// Records one request.
    pub fn record(&self, method: &str, route: &str, status: u16, micros: u64) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let entry = series.entry((method.to_owned(), route.to_owned(), status)).or_default();
        entry.count += 1;
        entry.sum_micros = entry.sum_micros.saturating_add(micros);
        for (bucket, bound) in entry.buckets.iter_mut().zip(BUCKETS_MICROS) {
            if micros <= bound {
                *bucket += 1;
            }
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut out = String::new();
        out.push_str("# HELP pcx_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE pcx_http_requests_total counter\n");
        for ((method, route, status), s) in &series {
            let _ = writeln!(
                out,
                "pcx_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {}",
                escape(route),
                s.count
            );
        }
        out.push_str("# HELP pcx_http_request_duration_seconds HTTP request latency by method, route and status.\n");
        out.push_str("# TYPE pcx_http_request_duration_seconds histogram\n");
        for ((method, route, status), s) in &series {
            let labels = format!("method=\"{method}\",route=\"{}\",status=\"{status}\"", escape(route));
            for (bound, count) in BUCKETS_MICROS.iter().zip(s.buckets) {
                let _ = writeln!(
                    out,
                    "pcx_http_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {count}",
                    micros_as_seconds(*bound)
                );
            }
            let _ = writeln!(out, "pcx_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", s.count);
            let _ = writeln!(out, "pcx_http_request_duration_seconds_sum{{{labels}}} {}", micros_as_seconds(s.sum_micros));
            let _ = writeln!(out, "pcx_http_request_duration_seconds_count{{{labels}}} {}", s.count);
        }
        out
    }
}

fn micros_as_seconds(micros: u64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The method as a label: one of the standard methods, else `other` (a client may send any
/// token as a method; each must not become a series of its own).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: times every request, records it, and logs it.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let status = response.status().as_u16();
    state.metrics.record(&method, &route, status, micros);
    tracing::debug!(%method, %route, status, micros, "request");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_methods_share_one_label() {
        for made_up in ["FOO", "BAR1", "PROPFIND"] {
            assert_eq!(method_label(&axum::http::Method::from_bytes(made_up.as_bytes()).unwrap()), "other");
        }
        assert_eq!(method_label(&axum::http::Method::DELETE), "DELETE");
    }

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.record("GET", "/health", 200, 3_000);
        metrics.record("GET", "/health", 200, 30_000);
        let text = metrics.render();
        assert!(text.contains("pcx_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 2"));
        assert!(text.contains("route=\"/health\",status=\"200\",le=\"0.005000\"} 1"));
        assert!(text.contains("route=\"/health\",status=\"200\",le=\"0.050000\"} 2"));
        assert!(text.contains("pcx_http_request_duration_seconds_sum{method=\"GET\",route=\"/health\",status=\"200\"} 0.033000"));
    }
}
