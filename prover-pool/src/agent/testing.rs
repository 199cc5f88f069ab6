//! A scripted stand-in for the exchange, for the agent's tests: a bare HTTP/1.1 responder on
//! 127.0.0.1 that records every request and answers from a closure. One request per connection
//! (`Connection: close`), which is all reqwest needs. (Raw `try_read`/`try_write`: this crate's
//! tokio has no `io-util`.) [`CircuitFixture`] answers the registered-circuit routes
//! (`/v1/circuits...`) with the multiplier fixture of `tests/fixtures/circom`; [`ServedKey`]
//! answers `/v1/circuits/hash-chain-<k>` and its `pk` artifact with an exchange's proving key,
//! by default the development key of [`dev_keys`], shared by every test of the process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use ark_bn254::Bn254;
use ark_groth16::{ProvingKey, VerifyingKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};

use crate::keys::{proving_key_bytes, random_setup, KeyStore};

/// A request as received.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// What to answer, and after how long.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    status: u16,
    content_type: &'static str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
    /// Send only this many bytes of the body (announced whole), then close: a broken transfer.
    cut_after: Option<usize>,
}

impl Reply {
    pub(crate) fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
            delay: Duration::ZERO,
            cut_after: None,
        }
    }

    /// Raw bytes (`application/octet-stream`), like an artifact download.
    pub(crate) fn bytes(status: u16, body: Vec<u8>) -> Reply {
        Reply { content_type: "application/octet-stream", body, ..Reply::json(status, Value::Null) }
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Announces the whole body but sends only its first `bytes`, then closes the connection.
    pub(crate) fn cut_after(self, bytes: usize) -> Reply {
        Reply { cut_after: Some(bytes), ..self }
    }

    /// Answers only after `delay` (a long-poll that finds nothing).
    pub(crate) fn after(self, delay: Duration) -> Reply {
        Reply { delay, ..self }
    }
}

/// The multiplier circuit of `tests/fixtures/circom` as a registered, ready circuit.
#[derive(Debug, Clone)]
pub(crate) struct CircuitFixture {
    /// Its circuit id (hex of the SHA-256 of its three artifacts, one after the other).
    pub id: String,
    pub r1cs: Vec<u8>,
    pub wasm: Vec<u8>,
    pub zkey: Vec<u8>,
    /// `input.json`.
    pub input: Value,
}

impl CircuitFixture {
    pub(crate) fn multiplier() -> CircuitFixture {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/circom/multiplier");
        let read = |file: &str| std::fs::read(dir.join(file)).unwrap_or_else(|err| panic!("{file}: {err}"));
        let (r1cs, wasm, zkey) = (read("multiplier.r1cs"), read("multiplier.wasm"), read("multiplier.zkey"));
        let input = serde_json::from_slice(&read("input.json")).expect("input.json");
        let id = hex::encode(Sha256::new().chain_update(&r1cs).chain_update(&wasm).chain_update(&zkey).finalize());
        CircuitFixture { id, r1cs, wasm, zkey, input }
    }

    /// An artifact's bytes by its API name.
    pub(crate) fn artifact(&self, kind: &str) -> Option<&[u8]> {
        match kind {
            "r1cs" => Some(&self.r1cs),
            "wasm" => Some(&self.wasm),
            "zkey" => Some(&self.zkey),
            _ => None,
        }
    }

    /// `GET /v1/circuits/{id}` as the exchange answers it (with a field the agent does not know).
    pub(crate) fn view(&self) -> Value {
        let artifact = |bytes: &[u8]| json!({"sha256": sha256_hex(bytes), "bytes": bytes.len()});
        json!({
            "circuit_id": self.id, "name": "multiplier", "status": "ready", "constraints": 7,
            "public_signals": 2, "size_log2": 4, "sample_input": self.input,
            "artifacts": {"r1cs": artifact(&self.r1cs), "wasm": artifact(&self.wasm), "zkey": artifact(&self.zkey)},
            "registered_at": "2025-01-01T00:00:00Z",
        })
    }

    /// The answer to a `/v1/circuits...` request for this circuit, `None` for any other path.
    /// `GET /v1/circuits` also lists a circuit that is not ready (and has no artifacts yet) and a
    /// size of the built-in circuit (whose artifacts are a `pk` only).
    pub(crate) fn reply(&self, request: &Request) -> Option<Reply> {
        let path = request.path.as_str();
        if path == "/v1/circuits" {
            let pending = json!({"circuit_id": "e".repeat(64), "name": "pending", "status": "checking"});
            let built_in = json!({"circuit_id": "hash-chain-10", "name": "hash-chain", "status": "ready",
                "size_log2": 10, "development_keys": true,
                "artifacts": {"pk": {"sha256": "0".repeat(64), "bytes": 1, "url": "/v1/circuits/hash-chain-10/artifacts/pk"}}});
            return Some(Reply::json(200, json!({"circuits": [pending, built_in, self.view()]})));
        }
        let rest = path.strip_prefix("/v1/circuits/")?;
        let Some((id, kind)) = rest.split_once("/artifacts/") else {
            return Some(match rest == self.id {
                true => Reply::json(200, self.view()),
                false => Reply::json(404, json!({"error": {"code": "not_found", "message": "no such circuit"}})),
            });
        };
        Some(match self.artifact(kind).filter(|_| id == self.id) {
            Some(bytes) => Reply::bytes(200, bytes.to_vec()).header("x-content-sha256", &sha256_hex(bytes)),
            None => Reply::json(404, json!({"error": {"code": "not_found", "message": "no such artifact"}})),
        })
    }
}

/// The development keys the tests' fake exchanges serve, in one directory of the system's temp dir
/// for every test process: development keys are deterministic, so the files of an earlier run are
/// the right ones (the store checks them when it loads them), and each size is set up once.
pub(crate) fn dev_keys() -> &'static KeyStore {
    static STORE: OnceLock<KeyStore> = OnceLock::new();
    STORE.get_or_init(|| KeyStore::new(std::env::temp_dir().join("pcx-prover-pool-agent-test-dev-keys")))
}

/// The development proving key of size 2^size_log2 from [`dev_keys`]; files that do not load
/// (left by another version) are deleted and the key made again.
pub(crate) fn dev_key(size_log2: u8) -> Arc<ProvingKey<Bn254>> {
    let store = dev_keys();
    store.proving_key(size_log2).unwrap_or_else(|err| {
        let _ = std::fs::remove_file(store.proving_key_path(size_log2));
        let _ = std::fs::remove_file(store.verifying_key_path(size_log2));
        store.forget(size_log2);
        store.proving_key(size_log2).unwrap_or_else(|again| panic!("development key 2^{size_log2}: {err}; {again}"))
    })
}

/// A `hash-chain` proving key as a fake exchange serves it on the route of one size.
#[derive(Clone)]
pub(crate) struct ServedKey {
    /// The size whose routes serve it (the key may be of another size, to test the checks).
    pub size_log2: u8,
    /// The key file: [`proving_key_bytes`].
    pub bytes: Arc<Vec<u8>>,
    /// Hex of the SHA-256 of `bytes`.
    pub sha256: String,
    /// The key's verifying key.
    pub vk: VerifyingKey<Bn254>,
    /// What the view says in `development_keys`.
    pub development: bool,
}

impl ServedKey {
    /// The development key of size 2^size_log2 ([`dev_key`]; its bytes are serialised once per
    /// process).
    pub(crate) fn development(size_log2: u8) -> ServedKey {
        static SERVED: OnceLock<Mutex<HashMap<u8, ServedKey>>> = OnceLock::new();
        let mut served = SERVED.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
        let key = served.entry(size_log2).or_insert_with(|| {
            let mut key = ServedKey::of(size_log2, &dev_key(size_log2));
            key.development = true;
            key
        });
        key.clone()
    }

    /// A fresh setup of size 2^size_log2 from the OS's randomness, as a production exchange makes.
    pub(crate) fn random(size_log2: u8) -> ServedKey {
        ServedKey::of(size_log2, &random_setup(size_log2).expect("random setup"))
    }

    /// `pk`, served on the routes of size 2^size_log2.
    pub(crate) fn of(size_log2: u8, pk: &ProvingKey<Bn254>) -> ServedKey {
        let bytes = proving_key_bytes(pk);
        ServedKey {
            size_log2,
            sha256: sha256_hex(&bytes),
            bytes: Arc::new(bytes),
            vk: pk.vk.clone(),
            development: false,
        }
    }

    /// The same key served on the routes of another size.
    pub(crate) fn served_as(self, size_log2: u8) -> ServedKey {
        ServedKey { size_log2, ..self }
    }

    /// `GET /v1/circuits/hash-chain-<k>` as the exchange answers it (with a field the agent does
    /// not know).
    pub(crate) fn view(&self) -> Value {
        let id = format!("hash-chain-{}", self.size_log2);
        json!({
            "circuit_id": id, "name": "hash-chain", "status": "ready", "size_log2": self.size_log2,
            "public_signals": 2, "development_keys": self.development,
            "artifacts": {"pk": {"sha256": self.sha256, "bytes": self.bytes.len(),
                                 "url": format!("/v1/circuits/{id}/artifacts/pk")}},
            "created_at": "2025-01-01T00:00:00Z",
        })
    }

    /// The answer to this key's view or `pk` artifact, `None` for any other path.
    pub(crate) fn reply(&self, request: &Request) -> Option<Reply> {
        let view = format!("/v1/circuits/hash-chain-{}", self.size_log2);
        let rest = request.path.strip_prefix(&view)?;
        match rest {
            "" => Some(Reply::json(200, self.view())),
            "/artifacts/pk" => Some(Reply::bytes(200, self.bytes.to_vec()).header("x-content-sha256", &self.sha256)),
            _ => None,
        }
    }
}

/// The answer of the first of `keys` serving `request`'s path, `None` if none does.
pub(crate) fn reply_with_keys(keys: &[ServedKey], request: &Request) -> Option<Reply> {
    keys.iter().find_map(|key| key.reply(request))
}

/// Lowercase hex of the SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

/// The fake exchange; stops when dropped.
pub(crate) struct FakeExchange {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeExchange {
    /// Serves `handler(request, n)`, where `n` counts the requests to that path so far (1-based).
    pub(crate) async fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> FakeExchange {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn({
            let requests = Arc::clone(&requests);
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream, Arc::clone(&handler), Arc::clone(&requests)));
                }
            }
        });
        FakeExchange { port, requests, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far, in arrival order.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }

    pub(crate) fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|request| request.path == path).collect()
    }
}

impl Drop for FakeExchange {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, handler: Arc<Handler>, requests: Arc<Mutex<Vec<Request>>>) {
    let Some(request) = read_request(&stream).await else { return };
    let reply = {
        let mut all = requests.lock().expect("requests");
        all.push(request.clone());
        let count = all.iter().filter(|seen| seen.path == request.path).count();
        drop(all);
        handler(&request, count)
    };
    tokio::time::sleep(reply.delay).await;
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    let sent = reply.cut_after.map_or(reply.body.len(), |cut| cut.min(reply.body.len()));
    bytes.extend_from_slice(&reply.body[..sent]);
    let _ = write_all(&stream, &bytes).await;
}

async fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let read = read_some(stream, &mut chunk).await?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let read = read_some(stream, &mut chunk).await?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some(Request { method, path, headers, body })
}

async fn read_some(stream: &TcpStream, buffer: &mut [u8]) -> Option<usize> {
    loop {
        stream.readable().await.ok()?;
        match stream.try_read(buffer) {
            Ok(read) => return Some(read),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> Option<()> {
    while !bytes.is_empty() {
        stream.writable().await.ok()?;
        match stream.try_write(bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
    Some(())
}
