//! A webhook receiver on 127.0.0.1 (a stand-in for a buyer's or prover's HTTP endpoint): it
//! records every request, answers 200, or 503 while it is told to be down, and verifies
//! Standard Webhooks signatures by the specification's text (HMAC-SHA256 over
//! `id.timestamp.body`, base64), independently of the exchange's code.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `webhook-id`.
    pub id: String,
    /// `webhook-timestamp`.
    pub timestamp: String,
    /// `webhook-signature`.
    pub signature: String,
    /// The raw body.
    pub body: Vec<u8>,
    /// Whether it was answered 2xx.
    pub accepted: bool,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Whether the signature verifies with `secret` (`whsec_<base64>`).
    pub fn verifies(&self, secret: &str) -> bool {
        let key = base64::engine::general_purpose::STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{}.{}.", self.id, self.timestamp).as_bytes());
        mac.update(&self.body);
        let expected = format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
        self.signature.split(' ').any(|s| s == expected)
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    down: Mutex<bool>,
}

/// The running receiver.
#[derive(Clone)]
pub struct Receiver {
    /// Its URL (`http://127.0.0.1:<port>/hook`).
    pub url: String,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts one on a free port.
    pub async fn start() -> Receiver {
        let shared = Arc::new(Shared::default());
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, shared }
    }

    /// While down, every request is answered 503 (and recorded as not accepted).
    pub fn set_down(&self, down: bool) {
        *self.shared.down.lock().unwrap() = down;
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// The accepted requests, one per `webhook-id` (the receiver's deduplication).
    pub fn accepted_once(&self) -> Vec<Received> {
        let mut seen = std::collections::HashSet::new();
        self.received().into_iter().filter(|r| r.accepted && seen.insert(r.id.clone())).collect()
    }

    /// Waits until `done` holds of the accepted events, or panics after `within`.
    pub async fn wait_for(&self, within: std::time::Duration, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let give_up = std::time::Instant::now() + within;
        loop {
            let accepted = self.accepted_once();
            if done(&accepted) {
                return accepted;
            }
            assert!(std::time::Instant::now() < give_up, "{what}: got {:?}", accepted.iter().map(|r| r.json()).collect::<Vec<_>>());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let accepted = !*shared.down.lock().unwrap();
    shared.received.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: body.to_vec(),
        accepted,
    });
    match accepted {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    }
}
