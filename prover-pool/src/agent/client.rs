//! The agent's HTTP client for the exchange: bearer authentication, retries, and the exchange's
//! clock.
//!
//! Invariants:
//! - Every call (a JSON `POST`, a JSON `GET`, or the `GET` of a download) is retried with
//!   [`Backoff`] on connection errors, timeouts, 408, 429 and 5xx, until it gets an answer, its
//!   caller's `retry_until` passes, or its `cancel` signal is raised. A cancel signal only
//!   interrupts the waits between attempts, never a request in flight (so a long-poll claim that
//!   the exchange answers with a job is never thrown away half-way).
//! - A retried request is byte-for-byte the same request, `Idempotency-Key` included.
//! - A `GET` made with [`ExchangeClient::get_or_unavailable`] is retried like any other call
//!   except on a 503, which it returns ([`CallError::Unavailable`], with `Retry-After`): for a
//!   caller that waits for something the exchange is still making and says so in the log.
//! - On a 401 the client logs in again with the API key once (concurrent callers share the one new
//!   token) and repeats the call; a second 401 is [`CallError::Unauthorized`].
//! - An outage is logged once: a warning at the first failure, then debug lines per retry, then one
//!   info line when any call gets through again.
//! - A download ([`ExchangeClient::download`]) is never held in memory: its body is handed out
//!   chunk by chunk ([`Download::chunk`]). Its timeout bounds the wait for the answer's head and
//!   for each chunk (a stall), not the whole transfer, which may take minutes for a large zkey. A
//!   transfer that breaks off is [`CallError::Interrupted`]; starting it again is the caller's
//!   choice (only the caller knows what it already wrote).
//! - TLS is rustls: an `https://` exchange's certificate must chain to the system's roots, the
//!   bundled Mozilla roots or a root of `--exchange-ca-file`. A certificate that does not check out
//!   (unknown issuer, expired, wrong name), or a peer that does not speak TLS, is
//!   [`CallError::Tls`] at once: retrying cannot fix the configuration, so it is never retried.
//! - Redirects (at most 10) are followed only to URLs that `--exchange` itself could be (see
//!   [`super::cli::exchange_transport`]): an `https://` exchange cannot bounce the API key, which
//!   a 307/308 would resend, to a plain `http://` host.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::{ErrorBody, TokenRequest, TokenResponse};
use super::backoff::Backoff;
use super::cli::exchange_transport;
use super::signal::Signal;
use super::TARGET;

/// Time limit of a call that is not a long-poll.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Time limit for opening a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

/// How the client connects, from the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connection {
    /// `--allow-insecure-http`: redirects to a plain `http://` host off loopback are followed too.
    pub allow_insecure_http: bool,
    /// `--exchange-ca-file`: a PEM file of extra trusted roots.
    pub ca_file: Option<PathBuf>,
}

/// Why a call failed for good.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The API key (or, after logging in again, the token) was refused.
    #[error("the exchange refused the credentials (401): {message}")]
    Unauthorized {
        /// The exchange's message.
        message: String,
    },
    /// The exchange answered with an error that retrying will not change.
    #[error("the exchange answered {status} `{code}`: {message}")]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The error code of the body (`lease_lost`, ...), empty when the body had none.
        code: String,
        /// The error message of the body.
        message: String,
    },
    /// `retry_until` passed while the exchange could not be reached.
    #[error("gave up retrying: {last}")]
    GaveUp {
        /// The last failure.
        last: String,
    },
    /// The caller's cancel signal was raised while waiting to retry.
    #[error("cancelled while waiting to retry")]
    Cancelled,
    /// A download's body broke off or stalled for the call's timeout.
    #[error("the transfer broke off: {failure}")]
    Interrupted {
        /// What went wrong.
        failure: String,
    },
    /// The exchange answered 503 to a call made with [`ExchangeClient::get_or_unavailable`]: what
    /// was asked for is not ready yet (other calls retry a 503 themselves).
    #[error("the exchange is not ready yet (503): {message}")]
    Unavailable {
        /// The error message of the body.
        message: String,
        /// The answer's `Retry-After`, when it had one (in seconds).
        retry_after: Option<Duration>,
    },
    /// TLS with the exchange failed in a way retrying cannot change: its certificate was refused
    /// (unknown issuer, expired, not for this host name) or it does not speak TLS.
    #[error(
        "TLS with the exchange failed: {failure} (for an exchange with a private CA or a self-signed certificate, \
         pass that certificate with --exchange-ca-file / PCX_EXCHANGE_CA_FILE)"
    )]
    Tls {
        /// What went wrong, with its causes.
        failure: String,
    },
    /// The request could not be built (or a redirect was refused) or the answer could not be read.
    #[error("{0}")]
    Protocol(String),
}

/// How one call retries.
#[derive(Debug, Clone)]
pub(crate) struct CallOptions {
    /// Time limit of each attempt.
    pub timeout: Duration,
    /// Sent as `Idempotency-Key` on every attempt.
    pub idempotency_key: Option<String>,
    /// No attempt starts after this instant.
    pub retry_until: Option<Instant>,
    /// Raising it ends the waits between attempts with [`CallError::Cancelled`].
    pub cancel: Option<Signal>,
}

impl CallOptions {
    /// Retries until answered or cancelled.
    pub(crate) fn until_cancelled(cancel: &Signal) -> CallOptions {
        CallOptions { timeout: CALL_TIMEOUT, idempotency_key: None, retry_until: None, cancel: Some(cancel.clone()) }
    }
}

/// How one attempt is sent.
#[derive(Debug, Clone, Copy)]
enum Method<'a> {
    /// A JSON `POST` of these bytes; the answer is read whole within the call's timeout.
    Post(&'a [u8]),
    /// A `GET`; the answer is read whole within the call's timeout.
    Get,
    /// A `GET` whose body the caller streams: the timeout bounds the wait for the head only.
    Stream,
}

/// What a call does with a 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On503 {
    /// Retries it, like any 5xx.
    Retry,
    /// Returns it as [`CallError::Unavailable`].
    Return,
}

/// One attempt's outcome, before retry policy. An answer's body is not read yet; `Unavailable` is
/// a 503 whose error body was read.
enum Attempt {
    Answered(reqwest::Response),
    Rejected { status: StatusCode, code: String, message: String },
    Transient { failure: String, retry_after: Option<Duration> },
    Unavailable { failure: String, message: String, retry_after: Option<Duration> },
}

/// A `GET` answered 2xx whose body is read piece by piece ([`ExchangeClient::download`]).
#[derive(Debug)]
pub(crate) struct Download {
    response: reqwest::Response,
    /// Longest wait for the next chunk.
    stall: Duration,
}

impl Download {
    /// A header of the answer, when its value is text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.response.headers().get(name).and_then(|value| value.to_str().ok())
    }

    /// The next piece of the body, `None` at its end; [`CallError::Interrupted`] when the
    /// connection broke or no byte came for the call's timeout.
    pub(crate) async fn chunk(&mut self) -> Result<Option<Vec<u8>>, CallError> {
        match tokio::time::timeout(self.stall, self.response.chunk()).await {
            Ok(Ok(chunk)) => Ok(chunk.map(Vec::from)),
            Ok(Err(err)) => Err(CallError::Interrupted { failure: describe(&err) }),
            Err(_) => Err(CallError::Interrupted {
                failure: format!("no data for {} s", self.stall.as_secs_f64()),
            }),
        }
    }
}

/// The client of one agent; shared by its workers and heartbeat task.
#[derive(Debug)]
pub(crate) struct ExchangeClient {
    http: reqwest::Client,
    base: String,
    api_key: String,
    /// The bearer token; empty until [`ExchangeClient::login`].
    token: tokio::sync::Mutex<String>,
    /// Start of the outage in progress, if any.
    outage: Mutex<Option<Instant>>,
    /// Exchange clock minus this machine's clock, in milliseconds (from heartbeats).
    clock_offset_ms: AtomicI64,
}

/// Idle pooled connections are dropped after this (below the exchange's default 10 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

impl ExchangeClient {
    /// A client of the exchange at `base` (e.g. `http://127.0.0.1:8080`), with the default
    /// [`Connection`] (system and bundled roots only).
    #[cfg(test)]
    pub(crate) fn new(base: &str, api_key: &str) -> anyhow::Result<ExchangeClient> {
        ExchangeClient::connect(base, api_key, &Connection::default())
    }

    /// A client of the exchange at `base` (already checked with
    /// [`super::cli::exchange_transport`]), connecting as `connection` says.
    pub(crate) fn connect(base: &str, api_key: &str, connection: &Connection) -> anyhow::Result<ExchangeClient> {
        let allow_insecure_http = connection.allow_insecure_http;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match exchange_transport(attempt.url().as_str(), allow_insecure_http) {
                Ok(_) => attempt.follow(),
                Err(err) => {
                    let refusal = format!("refused to follow the exchange's redirect to {}: {err:#}", attempt.url());
                    attempt.error(refusal)
                }
            }
        });
        let mut builder =
            reqwest::Client::builder()
                .use_rustls_tls()
                .connect_timeout(CONNECT_TIMEOUT)
                .redirect(redirects)
                // The exchange closes keep-alive connections idle for 10 s (its header-read
                // timeout); dropping ours sooner avoids sending a request into one it just closed.
                .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        if let Some(path) = &connection.ca_file {
            for root in read_ca_file(path)? {
                builder = builder.add_root_certificate(root);
            }
        }
        let http = builder.build().map_err(|err| match &connection.ca_file {
            Some(path) => anyhow::anyhow!(
                "cannot set up the HTTP client with --exchange-ca-file / PCX_EXCHANGE_CA_FILE {}: {}",
                path.display(),
                describe(&err)
            ),
            None => anyhow::anyhow!("cannot set up the HTTP client: {}", describe(&err)),
        })?;
        Ok(ExchangeClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            api_key: api_key.trim().to_string(),
            token: tokio::sync::Mutex::new(String::new()),
            outage: Mutex::new(None),
            clock_offset_ms: AtomicI64::new(0),
        })
    }

    /// The exchange's base URL.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// Exchanges the API key for a bearer token (`POST /v1/auth/token`).
    pub(crate) async fn login(&self, options: &CallOptions) -> Result<(), CallError> {
        let fresh = self.fetch_token(options).await?;
        *self.token.lock().await = fresh;
        Ok(())
    }

    /// `POST path` with `body` as the logged-in agent; decodes a 2xx answer as `T`.
    pub(crate) async fn post<B, T>(
        &self,
        op: &'static str,
        path: &str,
        body: &B,
        options: &CallOptions,
    ) -> Result<T, CallError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let body = serde_json::to_vec(body).map_err(|err| CallError::Protocol(format!("{op}: {err}")))?;
        let body = body.as_slice();
        let answer = self
            .authorized(op, options, move |token: String| async move {
                self.send(op, path, Method::Post(body), Some(&token), options, On503::Retry).await
            })
            .await?;
        decode(op, &answer)
    }

    /// `GET path` as the logged-in agent; decodes a 2xx answer as `T`.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        options: &CallOptions,
    ) -> Result<T, CallError> {
        let answer = self
            .authorized(op, options, move |token: String| async move {
                self.send(op, path, Method::Get, Some(&token), options, On503::Retry).await
            })
            .await?;
        decode(op, &answer)
    }

    /// [`ExchangeClient::get`], except that a 503 is not retried but returned as
    /// [`CallError::Unavailable`] (with its `Retry-After`), so that the caller can wait for the
    /// exchange to finish making something and say so.
    pub(crate) async fn get_or_unavailable<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        options: &CallOptions,
    ) -> Result<T, CallError> {
        let answer = self
            .authorized(op, options, move |token: String| async move {
                self.send(op, path, Method::Get, Some(&token), options, On503::Return).await
            })
            .await?;
        decode(op, &answer)
    }

    /// `GET path` as the logged-in agent, retried like any call until a 2xx head arrives; its body
    /// is then read with [`Download::chunk`] (`options.timeout` bounds the head and each chunk).
    pub(crate) async fn download(
        &self,
        op: &'static str,
        path: &str,
        options: &CallOptions,
    ) -> Result<Download, CallError> {
        self.authorized(op, options, move |token: String| async move {
            self.open_stream(op, path, Some(&token), options).await
        })
        .await
    }

    /// Runs `call` with the current token; on a 401 logs in again once (unless another caller
    /// already did) and runs it again with the new token.
    async fn authorized<T, F, Fut>(&self, op: &'static str, options: &CallOptions, call: F) -> Result<T, CallError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let token = self.token.lock().await.clone();
        match call(token.clone()).await {
            Err(CallError::Unauthorized { .. }) => {
                tracing::info!(target: TARGET, op, "token refused; logging in again with the API key");
                self.refresh_token(&token, options).await?;
                let token = self.token.lock().await.clone();
                call(token).await
            }
            other => other,
        }
    }

    /// Converts an instant of the exchange's clock into one of this machine's monotonic clock.
    pub(crate) fn local_instant(&self, exchange_time: DateTime<Utc>) -> Instant {
        let offset = chrono::Duration::milliseconds(self.clock_offset_ms.load(Ordering::Relaxed));
        let from_now = exchange_time - offset - Utc::now();
        let now = Instant::now();
        match from_now.to_std() {
            Ok(ahead) => now + ahead,
            Err(_) => from_now.abs().to_std().ok().and_then(|behind| now.checked_sub(behind)).unwrap_or(now),
        }
    }

    /// Records the exchange's clock, read between `sent` and `received` (this machine's clock).
    pub(crate) fn observe_exchange_clock(
        &self,
        exchange_time: DateTime<Utc>,
        sent: DateTime<Utc>,
        received: DateTime<Utc>,
    ) {
        let midpoint = sent + (received - sent) / 2;
        self.clock_offset_ms.store((exchange_time - midpoint).num_milliseconds(), Ordering::Relaxed);
    }

    /// Logs in again unless another caller already replaced `stale`.
    async fn refresh_token(&self, stale: &str, options: &CallOptions) -> Result<(), CallError> {
        let mut token = self.token.lock().await;
        if *token == stale {
            *token = self.fetch_token(options).await?;
        }
        Ok(())
    }

    async fn fetch_token(&self, options: &CallOptions) -> Result<String, CallError> {
        let body = serde_json::to_vec(&TokenRequest { api_key: &self.api_key })
            .map_err(|err| CallError::Protocol(format!("login: {err}")))?;
        let options = CallOptions { idempotency_key: None, timeout: CALL_TIMEOUT, ..options.clone() };
        let answer = self.send("login", "/v1/auth/token", Method::Post(&body), None, &options, On503::Retry).await?;
        Ok(decode::<TokenResponse>("login", &answer)?.token)
    }

    /// One call with retries, its answer read whole; any 4xx other than 408 and 429 ends it, and
    /// so does a 503 when `on_503` says so.
    async fn send(
        &self,
        op: &'static str,
        path: &str,
        method: Method<'_>,
        token: Option<&str>,
        options: &CallOptions,
        on_503: On503,
    ) -> Result<Vec<u8>, CallError> {
        let url = format!("{}{path}", self.base);
        let mut backoff = Backoff::new();
        loop {
            let (failure, retry_after) = match self.attempt(&url, method, token, options).await? {
                // An answer cut off half-way is retried like one that never came.
                Attempt::Answered(response) => match response.bytes().await {
                    Ok(bytes) => {
                        self.note_success(op);
                        return Ok(bytes.to_vec());
                    }
                    Err(err) => (describe(&err), None),
                },
                Attempt::Rejected { status, code, message } => {
                    self.note_success(op);
                    return Err(rejection(status, code, message));
                }
                Attempt::Unavailable { message, retry_after, .. } if on_503 == On503::Return => {
                    self.note_success(op);
                    return Err(CallError::Unavailable { message, retry_after });
                }
                Attempt::Transient { failure, retry_after } | Attempt::Unavailable { failure, retry_after, .. } => {
                    (failure, retry_after)
                }
            };
            self.wait_to_retry(op, failure, retry_after, &mut backoff, options).await?;
        }
    }

    /// A `GET` with retries until a 2xx head; its body is left to the caller.
    async fn open_stream(
        &self,
        op: &'static str,
        path: &str,
        token: Option<&str>,
        options: &CallOptions,
    ) -> Result<Download, CallError> {
        let url = format!("{}{path}", self.base);
        let mut backoff = Backoff::new();
        loop {
            let (failure, retry_after) = match self.attempt(&url, Method::Stream, token, options).await? {
                Attempt::Answered(response) => {
                    self.note_success(op);
                    return Ok(Download { response, stall: options.timeout });
                }
                Attempt::Rejected { status, code, message } => {
                    self.note_success(op);
                    return Err(rejection(status, code, message));
                }
                Attempt::Transient { failure, retry_after } | Attempt::Unavailable { failure, retry_after, .. } => {
                    (failure, retry_after)
                }
            };
            self.wait_to_retry(op, failure, retry_after, &mut backoff, options).await?;
        }
    }

    /// Notes the failure and waits the backoff's next delay (at least `Retry-After`, within
    /// `retry_until`); `GaveUp` when the time is over, `Cancelled` when the cancel signal rises.
    async fn wait_to_retry(
        &self,
        op: &'static str,
        failure: String,
        retry_after: Option<Duration>,
        backoff: &mut Backoff,
        options: &CallOptions,
    ) -> Result<(), CallError> {
        self.note_failure(op, &failure);
        let mut delay = backoff.next_delay().max(retry_after.unwrap_or_default().min(super::backoff::CAP));
        if let Some(until) = options.retry_until {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallError::GaveUp { last: failure });
            }
            delay = delay.min(left);
        }
        tracing::debug!(target: TARGET, op, failure = %failure, delay_ms = delay.as_millis() as u64, "retrying");
        match &options.cancel {
            Some(cancel) => tokio::select! {
                () = tokio::time::sleep(delay) => Ok(()),
                () = cancel.raised() => Err(CallError::Cancelled),
            },
            None => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
        }
    }

    /// One attempt: the answer's head, or why there is none. A 2xx body is left unread; an error
    /// body is read for its code and message.
    async fn attempt(
        &self,
        url: &str,
        method: Method<'_>,
        token: Option<&str>,
        options: &CallOptions,
    ) -> Result<Attempt, CallError> {
        let mut request = match method {
            Method::Post(body) => self
                .http
                .post(url)
                .timeout(options.timeout)
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec()),
            Method::Get => self.http.get(url).timeout(options.timeout),
            // A request timeout would also bound the body's transfer; the head is bounded below.
            Method::Stream => self.http.get(url),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = &options.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let sent = match tokio::time::timeout(options.timeout, request.send()).await {
            Ok(sent) => sent,
            Err(_) => {
                let failure = format!("no answer within {} s", options.timeout.as_secs_f64());
                return Ok(Attempt::Transient { failure, retry_after: None });
            }
        };
        let response = match sent {
            Ok(response) => response,
            Err(err) if err.is_builder() || err.is_redirect() => {
                return Err(CallError::Protocol(format!("{url}: {}", describe(&err))))
            }
            Err(err) if is_permanent_tls_failure(&err) => return Err(CallError::Tls { failure: describe(&err) }),
            Err(err) => return Ok(Attempt::Transient { failure: describe(&err), retry_after: None }),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Attempt::Answered(response));
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match tokio::time::timeout(options.timeout, response.bytes()).await {
            Ok(Ok(bytes)) => bytes.to_vec(),
            Ok(Err(err)) => return Ok(Attempt::Transient { failure: describe(&err), retry_after: None }),
            Err(_) => {
                let failure = format!("HTTP {status}: the body never came");
                return Ok(Attempt::Transient { failure, retry_after });
            }
        };
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (String::new(), snippet(&bytes)),
        };
        if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS
        {
            let failure = format!("HTTP {status} {code} {message}").trim_end().to_string();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                return Ok(Attempt::Unavailable { failure, message, retry_after });
            }
            return Ok(Attempt::Transient { failure, retry_after });
        }
        Ok(Attempt::Rejected { status, code, message })
    }

    fn note_failure(&self, op: &str, failure: &str) {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        if outage.is_none() {
            *outage = Some(Instant::now());
            tracing::warn!(
                target: TARGET,
                op,
                exchange = %self.base,
                failure,
                "cannot reach the exchange; retrying with backoff until it answers"
            );
        }
    }

    fn note_success(&self, op: &str) {
        let mut outage = self.outage.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(since) = outage.take() {
            tracing::info!(
                target: TARGET,
                op,
                exchange = %self.base,
                down_for_ms = since.elapsed().as_millis() as u64,
                "the exchange answers again"
            );
        }
    }
}

/// The error of a refused call: 401 is [`CallError::Unauthorized`].
fn rejection(status: StatusCode, code: String, message: String) -> CallError {
    if status == StatusCode::UNAUTHORIZED {
        CallError::Unauthorized { message }
    } else {
        CallError::Api { status, code, message }
    }
}

/// A 2xx body as `T`; an empty body reads as `null`.
fn decode<T: DeserializeOwned>(op: &str, bytes: &[u8]) -> Result<T, CallError> {
    let bytes = if bytes.trim_ascii().is_empty() { b"null".as_slice() } else { bytes };
    serde_json::from_slice(bytes)
        .map_err(|err| CallError::Protocol(format!("unexpected answer to {op}: {err}; body: {}", snippet(bytes))))
}

/// The roots of a `--exchange-ca-file`: every `CERTIFICATE` block of the PEM file (at least one).
pub(crate) fn read_ca_file(path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let option = "--exchange-ca-file / PCX_EXCHANGE_CA_FILE";
    let pem =
        std::fs::read(path).map_err(|err| anyhow::anyhow!("{option} {}: cannot read it: {err}", path.display()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|err| anyhow::anyhow!("{option} {}: not a PEM file: {}", path.display(), describe(&err)))?;
    if roots.is_empty() {
        anyhow::bail!("{option} {}: no `-----BEGIN CERTIFICATE-----` block in it", path.display());
    }
    Ok(roots)
}

/// Whether a failed request failed in TLS for a reason that retrying cannot change: the server's
/// certificate was refused, it presented none, it does not speak TLS (or only versions or suites
/// rustls refuses). Dropped connections and timeouts during a handshake are not among them.
fn is_permanent_tls_failure(err: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::UnsupportedNameType
                    | rustls::Error::PeerIncompatible(_)
                    | rustls::Error::InvalidMessage(_)
            );
        }
        // rustls' error reaches reqwest inside (nested) `io::Error`s, whose `source()` skips the
        // error they wrap: step into it instead.
        source = match cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(wrapped) => Some(wrapped as &(dyn std::error::Error + 'static)),
            None => cause.source(),
        };
    }
    false
}

/// A reqwest error with its causes (the top level alone says little: "error sending request").
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of a body, for messages.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::super::testing::{FakeExchange, Reply};
    use super::*;

    fn options() -> CallOptions {
        CallOptions { timeout: Duration::from_secs(5), idempotency_key: None, retry_until: None, cancel: None }
    }

    #[tokio::test]
    async fn retries_5xx_then_returns_the_answer() {
        let exchange = FakeExchange::start(|request, count| match request.path.as_str() {
            "/v1/auth/token" => Reply::json(200, json!({"token": "t1"})),
            _ if count < 3 => Reply::json(503, json!({"error": {"code": "unavailable", "message": "down"}})),
            _ => Reply::json(200, json!({"ok": true})),
        })
        .await;
        let client = ExchangeClient::new(&exchange.url(), "key").unwrap();
        client.login(&options()).await.unwrap();
        let options = CallOptions { idempotency_key: Some("k-1".into()), ..options() };
        let answer: serde_json::Value = client.post("test", "/v1/x", &json!({"a": 1}), &options).await.unwrap();
        assert_eq!(answer, json!({"ok": true}));
        let calls = exchange.requests_to("/v1/x");
        assert_eq!(calls.len(), 3);
        assert!(calls.iter().all(|call| call.header("idempotency-key") == Some("k-1")));
        assert!(calls.iter().all(|call| call.header("authorization") == Some("Bearer t1")));
        assert!(calls.iter().all(|call| call.body == calls[0].body));
    }

    #[tokio::test]
    async fn get_or_unavailable_returns_a_503_with_its_retry_after_and_retries_other_failures() {
        let exchange = FakeExchange::start(|request, count| match request.path.as_str() {
            "/v1/auth/token" => Reply::json(200, json!({"token": "t1"})),
            _ if count == 1 => Reply::json(502, json!({"error": {"code": "bad_gateway", "message": "proxy"}})),
            _ if count == 2 => {
                Reply::json(503, json!({"error": {"code": "unavailable", "message": "making the setup"}}))
                    .header("Retry-After", "7")
            }
            _ => Reply::json(200, json!({"ok": true})),
        })
        .await;
        let client = ExchangeClient::new(&exchange.url(), "key").unwrap();
        client.login(&options()).await.unwrap();
        let err = client.get_or_unavailable::<serde_json::Value>("test", "/v1/x", &options()).await.unwrap_err();
        match err {
            CallError::Unavailable { message, retry_after } => {
                assert_eq!((message.as_str(), retry_after), ("making the setup", Some(Duration::from_secs(7))));
            }
            other => panic!("not unavailable: {other:?}"),
        }
        assert_eq!(exchange.requests_to("/v1/x").len(), 2, "the 502 was retried, the 503 returned");
        let answer: serde_json::Value = client.get_or_unavailable("test", "/v1/x", &options()).await.unwrap();
        assert_eq!(answer, json!({"ok": true}));
    }

    #[tokio::test]
    async fn a_refused_token_is_renewed_once() {
        let logins = Arc::new(Mutex::new(0));
        let exchange = FakeExchange::start({
            let logins = Arc::clone(&logins);
            move |request, _| match request.path.as_str() {
                "/v1/auth/token" => {
                    let mut logins = logins.lock().unwrap();
                    *logins += 1;
                    Reply::json(200, json!({"token": format!("t{logins}")}))
                }
                _ if request.header("authorization") == Some("Bearer t2") => Reply::json(200, json!({})),
                _ => Reply::json(401, json!({"error": {"code": "unauthorized", "message": "expired"}})),
            }
        })
        .await;
        let client = ExchangeClient::new(&exchange.url(), "key").unwrap();
        client.login(&options()).await.unwrap();
        let _: serde_json::Value = client.post("test", "/v1/x", &json!({}), &options()).await.unwrap();
        assert_eq!(*logins.lock().unwrap(), 2);
        assert_eq!(exchange.requests_to("/v1/x").len(), 2);
    }

    #[tokio::test]
    async fn a_bad_api_key_is_unauthorized() {
        let exchange = FakeExchange::start(|_, _| {
            Reply::json(401, json!({"error": {"code": "unauthorized", "message": "bad key"}}))
        })
        .await;
        let client = ExchangeClient::new(&exchange.url(), "key").unwrap();
        let err = client.login(&options()).await.unwrap_err();
        assert!(matches!(&err, CallError::Unauthorized { message } if message == "bad key"), "{err:?}");
    }

    #[tokio::test]
    async fn client_errors_are_not_retried() {
        let exchange = FakeExchange::start(|request, _| match request.path.as_str() {
            "/v1/auth/token" => Reply::json(200, json!({"token": "t"})),
            _ => Reply::json(409, json!({"error": {"code": "lease_lost", "message": "gone"}})),
        })
        .await;
        let client = ExchangeClient::new(&exchange.url(), "key").unwrap();
        client.login(&options()).await.unwrap();
        let err = client.post::<_, serde_json::Value>("test", "/v1/x", &json!({}), &options()).await.unwrap_err();
        assert!(matches!(&err, CallError::Api { status, code, .. } if *status == 409 && code == "lease_lost"));
        assert_eq!(exchange.requests_to("/v1/x").len(), 1);
    }

    #[tokio::test]
    async fn retries_stop_at_the_deadline_or_when_cancelled() {
        // Nothing listens on this port once the listener is dropped: connections are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = ExchangeClient::new(&format!("http://127.0.0.1:{port}"), "key").unwrap();
        let started = Instant::now();
        let until = CallOptions { retry_until: Some(started + Duration::from_millis(600)), ..options() };
        let err = client.post::<_, serde_json::Value>("test", "/v1/x", &json!({}), &until).await.unwrap_err();
        assert!(matches!(err, CallError::GaveUp { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(3));

        let cancel = Signal::new();
        let cancelled = CallOptions::until_cancelled(&cancel);
        let call =
            tokio::spawn(
                async move { client.post::<_, serde_json::Value>("test", "/v1/x", &json!({}), &cancelled).await },
            );
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.raise();
        let err = tokio::time::timeout(Duration::from_secs(2), call).await.unwrap().unwrap().unwrap_err();
        assert!(matches!(err, CallError::Cancelled), "{err:?}");
    }

    #[tokio::test]
    async fn gets_json_and_streams_downloads_chunk_by_chunk() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let served = body.clone();
        let exchange = FakeExchange::start(move |request, count| match request.path.as_str() {
            "/v1/auth/token" => Reply::json(200, json!({"token": "t"})),
            "/v1/thing" => Reply::json(200, json!({"n": 1})),
            "/v1/blob" if count == 1 => Reply::json(503, json!({"error": {"code": "unavailable", "message": "x"}})),
            "/v1/blob" => Reply::bytes(200, served.clone()).header("x-content-sha256", "abc"),
            "/v1/cut" => Reply::bytes(200, served.clone()).cut_after(1000),
            _ => Reply::json(404, json!({"error": {"code": "not_found", "message": "no"}})),
        })
        .await;
        let client = ExchangeClient::new(&exchange.url(), "key").unwrap();
        client.login(&options()).await.unwrap();
        let thing: serde_json::Value = client.get("test", "/v1/thing", &options()).await.unwrap();
        assert_eq!(thing, json!({"n": 1}));
        let get = &exchange.requests_to("/v1/thing")[0];
        assert_eq!((get.method.as_str(), get.header("authorization")), ("GET", Some("Bearer t")));

        let mut download = client.download("test", "/v1/blob", &options()).await.unwrap();
        assert_eq!(download.header("x-content-sha256"), Some("abc"));
        let mut received = Vec::new();
        while let Some(chunk) = download.chunk().await.unwrap() {
            received.extend_from_slice(&chunk);
        }
        assert_eq!(received, body);
        assert_eq!(exchange.requests_to("/v1/blob").len(), 2, "a 503 before the head is retried");

        let mut cut = client.download("test", "/v1/cut", &options()).await.unwrap();
        let err = loop {
            match cut.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("a cut transfer read as complete"),
                Err(err) => break err,
            }
        };
        assert!(matches!(err, CallError::Interrupted { .. }), "{err:?}");
        let err = client.download("test", "/v1/missing", &options()).await.unwrap_err();
        assert!(matches!(err, CallError::Api { status, .. } if status == 404), "{err:?}");
    }

    #[tokio::test]
    async fn redirects_to_plain_http_off_loopback_are_refused_and_not_retried() {
        let exchange = FakeExchange::start(|request, _| match request.path.as_str() {
            "/v1/auth/token" => Reply::json(200, json!({"token": "t"})),
            "/v1/away" => Reply::json(307, json!({})).header("Location", "http://exchange.example/v1/x"),
            "/v1/near" => Reply::json(307, json!({})).header("Location", "/v1/x"),
            _ => Reply::json(200, json!({"ok": true})),
        })
        .await;
        let client = ExchangeClient::new(&exchange.url(), "key").unwrap();
        client.login(&options()).await.unwrap();
        let err = client.post::<_, serde_json::Value>("test", "/v1/away", &json!({}), &options()).await.unwrap_err();
        let CallError::Protocol(message) = &err else { panic!("not refused: {err:?}") };
        assert!(message.contains("refused to follow") && message.contains("--allow-insecure-http"), "{message}");
        assert_eq!(exchange.requests_to("/v1/away").len(), 1);
        // A redirect on the same loopback exchange is followed, the body resent (307).
        let answer: serde_json::Value = client.post("test", "/v1/near", &json!({"a": 1}), &options()).await.unwrap();
        assert_eq!(answer, json!({"ok": true}));
        assert_eq!(exchange.requests_to("/v1/x")[0].json(), json!({"a": 1}));
    }

    #[test]
    fn exchange_time_maps_to_local_instants() {
        let client = ExchangeClient::new("http://127.0.0.1:1", "key").unwrap();
        let now = Utc::now();
        // The exchange's clock runs 60 s ahead of ours.
        client.observe_exchange_clock(now + chrono::Duration::seconds(60), now, now);
        let lease = client.local_instant(now + chrono::Duration::seconds(90));
        let ahead = lease.saturating_duration_since(Instant::now());
        assert!(ahead > Duration::from_secs(25) && ahead <= Duration::from_secs(30), "{ahead:?}");
        let past = client.local_instant(now);
        assert!(past <= Instant::now());
    }
}
