//! The agent's client over TLS, against a bare HTTPS responder on 127.0.0.1 (tokio-rustls) whose
//! self-signed certificate (for `localhost` and 127.0.0.1) is made when the test starts (rcgen):
//! trusted through `--exchange-ca-file`, refused at once without it, and a bad CA file refused
//! before anything is sent.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::rustls;

use super::client::{CallError, CallOptions, Connection, ExchangeClient};
use super::{run_agent, AgentArgs, BackendChoice};
use crate::keys::test_support::TempDir;

/// An HTTPS server that answers every request with `{"token": "t"}` (enough for a login).
struct HttpsExchange {
    port: u16,
    /// The certificate, PEM.
    cert_pem: String,
    /// TCP connections accepted (each TLS attempt of the client is one).
    connections: Arc<AtomicUsize>,
    /// Requests read and answered (only after a completed handshake).
    answered: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsExchange {
    async fn start() -> HttpsExchange {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("certificate params");
        params.subject_alt_names.push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let key = rcgen::KeyPair::generate().expect("key pair");
        let cert = params.self_signed(&key).expect("self-signed certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let (connections, answered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let task = tokio::spawn({
            let (connections, answered) = (Arc::clone(&connections), Arc::clone(&answered));
            async move {
                while let Ok((tcp, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (acceptor, answered) = (acceptor.clone(), Arc::clone(&answered));
                    tokio::spawn(async move {
                        // A client that refuses the certificate ends the handshake here.
                        let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                        if read_request(&mut tls).await.is_none() {
                            return;
                        }
                        answered.fetch_add(1, Ordering::SeqCst);
                        let body = br#"{"token": "t"}"#;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                             connection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = tls.write_all(head.as_bytes()).await;
                        let _ = tls.write_all(body).await;
                        let _ = tls.shutdown().await;
                    });
                }
            }
        });
        HttpsExchange { port, cert_pem: cert.pem(), connections, answered, task }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for HttpsExchange {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head and `content-length` body); `None` if the connection ends first.
async fn read_request(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                return Some(received);
            }
        }
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
        }
    }
}

fn options() -> CallOptions {
    // No deadline and no cancel signal: only a failure the client does not retry ends the call.
    CallOptions { timeout: Duration::from_secs(5), idempotency_key: None, retry_until: None, cancel: None }
}

#[tokio::test]
async fn the_client_speaks_tls_to_an_exchange_trusted_with_its_ca_file() {
    let exchange = HttpsExchange::start().await;
    let dir = TempDir::new("tls-ca");
    let ca_file = dir.path().join("exchange-ca.pem");
    std::fs::write(&ca_file, &exchange.cert_pem).unwrap();
    let connection = Connection { ca_file: Some(ca_file), ..Connection::default() };
    let client = ExchangeClient::connect(&exchange.url(), "key", &connection).unwrap();
    tokio::time::timeout(Duration::from_secs(20), client.login(&options())).await.unwrap().unwrap();
    assert_eq!(exchange.answered.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_at_once_and_not_retried() {
    let exchange = HttpsExchange::start().await;
    let client = ExchangeClient::connect(&exchange.url(), "key", &Connection::default()).unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(20), client.login(&options()))
        .await
        .expect("a refused certificate must not be retried")
        .unwrap_err();
    let CallError::Tls { failure } = &err else { panic!("not a TLS error: {err:?}") };
    assert!(failure.contains("invalid peer certificate") && failure.contains("UnknownIssuer"), "{failure}");
    let message = err.to_string();
    assert!(message.contains("--exchange-ca-file") && message.contains("PCX_EXCHANGE_CA_FILE"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(exchange.connections.load(Ordering::SeqCst), 1, "one attempt only");
    assert_eq!(exchange.answered.load(Ordering::SeqCst), 0, "nothing was sent over the refused connection");
}

#[tokio::test]
async fn the_agent_stops_on_an_untrusted_certificate_naming_the_ca_option() {
    let exchange = HttpsExchange::start().await;
    let keys = TempDir::new("tls-agent");
    let args = AgentArgs {
        backend: BackendChoice::Cpu,
        sizes: vec![10],
        keys_dir: Some(keys.path().to_path_buf()),
        ..AgentArgs::new(exchange.url(), "pk_test")
    };
    let err = tokio::time::timeout(Duration::from_secs(30), run_agent(args, std::future::pending()))
        .await
        .expect("the agent must not retry a refused certificate")
        .unwrap_err();
    let err = format!("{err:#}");
    assert!(err.starts_with("logging in at https://127.0.0.1:"), "{err}");
    assert!(err.contains("TLS with the exchange failed") && err.contains("--exchange-ca-file"), "{err}");
    assert_eq!(exchange.answered.load(Ordering::SeqCst), 0);
}

#[test]
fn a_bad_ca_file_is_a_clear_error() {
    let dir = TempDir::new("tls-bad-ca");
    let connect = |path: std::path::PathBuf| {
        let connection = Connection { ca_file: Some(path), ..Connection::default() };
        ExchangeClient::connect("https://127.0.0.1:1", "key", &connection).map(|_| ()).unwrap_err().to_string()
    };
    let err = connect(dir.path().join("missing.pem"));
    assert!(err.starts_with("--exchange-ca-file / PCX_EXCHANGE_CA_FILE") && err.contains("cannot read"), "{err}");

    let text = dir.path().join("text.pem");
    std::fs::write(&text, "not a certificate\n").unwrap();
    let err = connect(text);
    assert!(err.starts_with("--exchange-ca-file") && err.contains("no `-----BEGIN CERTIFICATE-----`"), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let err = connect(garbage);
    assert!(err.contains("--exchange-ca-file") && err.contains("BadEncoding"), "{err}");
}
