//! A slow or silent client cannot hold the server: headers that trickle in, a keep-alive
//! connection left idle and a body that never finishes are all cut off within their bounds,
//! over real TCP, while ordinary requests go on being served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use pcx_exchange::config::Settings;
use pcx_exchange::{app, run_with_limits, AppState, ServerLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The app with 1 s header and request bounds; its address.
async fn serve_with_short_limits() -> (std::net::SocketAddr, sqlx::PgPool) {
    let db = common::fresh_database().await;
    let mut config = common::serve_config();
    config.request_timeout_secs = 1;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = AppState::new(db.clone(), &config, Settings::from_config(&config, addr).unwrap()).await.unwrap();
    let limits = ServerLimits { header_read_timeout: Duration::from_secs(1) };
    tokio::spawn(run_with_limits(listener, app(state), std::future::pending(), limits));
    (addr, db)
}

/// Reads until the server closes the connection (or 10 s pass); what it sent, and when it closed.
async fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("the server kept the connection open for 10 s"),
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), started.elapsed())
}

#[tokio::test]
async fn trickled_headers_are_cut_off() {
    let (addr, _db) = serve_with_short_limits().await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // One byte every 200 ms: the headers would take seconds to arrive.
    let writer = async {
        for byte in b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".iter().cycle().take(100) {
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(6), writer).await;
    let (_, _) = read_until_closed(&mut slow).await;
    assert!(started.elapsed() < Duration::from_secs(6), "closed after {:?}", started.elapsed());

    // Meanwhile and afterwards, others are served.
    let ok = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (addr, _db) = serve_with_short_limits().await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let (answer, took) = read_until_closed(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(4), "an idle connection stayed {took:?}");
}

#[tokio::test]
async fn a_body_that_never_finishes_is_408_and_nothing_is_written() {
    let (addr, db) = serve_with_short_limits().await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let body = br#"{"name": "slow", "role": "buyer"}"#;
    let head = format!(
        "POST /v1/accounts HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..10]).await.unwrap();
    let started = Instant::now();
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buffer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&buffer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE name = 'slow'").fetch_one(&db).await.unwrap();
    assert_eq!(accounts, 0);
}
