//! Running the exchange inside another program: a scratch database and the application served on
//! 127.0.0.1:0 with its settlement scheduler, plus a small HTTP client. Used by `pcx demo` and the
//! `pcx bench` programs.

use std::future::Future;

use anyhow::Context;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::{ServeConfig, Settings};
use crate::{app, db, run, AppState};

/// Runs `work` against a scratch database (created, migrated, dropped afterwards).
pub async fn with_scratch_database<T, F, Fut>(
    config: &ServeConfig,
    prefix: &str,
    connections: u32,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(PgPool, String) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let database = db::Database::open(&config.db).await?;
    let scratch = format!("{prefix}_{}", std::process::id());
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{scratch}\"")).execute(&database.pool).await?;
    sqlx::raw_sql(&format!("CREATE DATABASE \"{scratch}\"")).execute(&database.pool).await?;
    let options = database.pool.connect_options().as_ref().clone().database(&scratch);
    // The pool options of `pcx serve`, so both sides of a benchmark pay the same per acquire.
    let pool = db::pool_options(connections)
        .connect_with(options)
        .await
        .context("connecting to the scratch database")?;
    db::MIGRATOR.run(&pool).await?;
    let outcome = work(pool.clone(), database.description.clone()).await;
    pool.close().await;
    // FORCE: a background pool (see [`Served`]) that `work` left open must not keep the scratch
    // database alive.
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{scratch}\" WITH (FORCE)")).execute(&database.pool).await.ok();
    database.close().await;
    outcome
}

/// The application served on 127.0.0.1:0 over `pool`, with an HTTP client and an admin token.
pub struct Served {
    /// Base URL.
    pub base: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// An operator token.
    pub admin: String,
    /// The admin API key.
    pub admin_key: String,
    /// The served application's state.
    pub state: AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    stop_scheduler: tokio::sync::watch::Sender<bool>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The scheduler and the oracle, on their own pool (as in `pcx serve`).
    loops: Vec<tokio::task::JoinHandle<()>>,
    background: PgPool,
}

impl Served {
    /// Serves the application (and its settlement scheduler) on 127.0.0.1:0 over `pool`; the
    /// scheduler and the oracle use a pool of their own to the same database, as in `pcx serve`.
    pub async fn start(pool: &PgPool, config: &ServeConfig, idle_connections: usize) -> anyhow::Result<Served> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut config = config.clone();
        // The demo and the benchmarks are one client on loopback making many requests on
        // purpose: the limits meant for strangers would only get in their way.
        config.rate_auth_per_min = u32::MAX;
        config.rate_oracle_per_sec = u32::MAX;
        config.rate_quotes_per_min = u32::MAX;
        let admin_key = crate::auth::generate_api_key();
        config.admin_api_key = Some(admin_key.clone());
        let state = AppState::new(pool.clone(), &config, Settings::from_config(&config, addr)?).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(listener, app(state.clone()), async {
            let _ = stopped.await;
        }));
        let background = db::background_pool(pool, config.db.background_connections);
        let (stop_scheduler, scheduler_stopped) = tokio::sync::watch::channel(false);
        let loops = vec![
            tokio::spawn(crate::service::settlement::run_scheduler(
                state.for_background(background.clone()),
                scheduler_stopped.clone(),
            )),
            tokio::spawn(crate::service::webhooks::run_deliveries(state.for_background(background.clone()), scheduler_stopped.clone())),
            tokio::spawn(crate::service::oracle::run_oracle(state.for_background(background.clone()), scheduler_stopped)),
        ];
        let base = format!("http://{addr}");
        let http = reqwest::Client::builder().pool_max_idle_per_host(idle_connections).build()?;
        let admin = token(&http, &base, &admin_key).await?;
        Ok(Served { base, http, admin, admin_key, state, stop, stop_scheduler, server, loops, background })
    }

    /// POSTs JSON; an error unless the answer is 2xx.
    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "POST {path} answered {status}: {body}");
        Ok(body)
    }

    /// Registers an account, credits `deposit`, and returns (account id, token).
    pub async fn account(&self, name: &str, role: &str, deposit: &str) -> anyhow::Result<(String, String)> {
        let (id, token, _) = self.account_with_key(name, role, deposit).await?;
        Ok((id, token))
    }

    /// Registers an account, credits `deposit`, and returns (account id, token, API key).
    pub async fn account_with_key(&self, name: &str, role: &str, deposit: &str) -> anyhow::Result<(String, String, String)> {
        let account = self.post("/v1/accounts", None, json!({"name": name, "role": role})).await?;
        let id = account["account_id"].as_str().context("account_id")?.to_owned();
        self.post("/v1/admin/deposits", Some(&self.admin), json!({"account_id": id, "amount": deposit})).await?;
        let key = account["api_key"].as_str().context("api_key")?.to_owned();
        let bearer = token(&self.http, &self.base, &key).await?;
        Ok((id, bearer, key))
    }

    /// GETs JSON; an error unless the answer is 2xx.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> anyhow::Result<Value> {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "GET {path} answered {status}: {body}");
        Ok(body)
    }

    /// PUTs JSON; an error unless the answer is 2xx.
    pub async fn put(&self, path: &str, bearer: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let mut request = self.http.put(format!("{}{path}", self.base)).json(&body);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        anyhow::ensure!(status.is_success(), "PUT {path} answered {status}: {body}");
        Ok(body)
    }

    /// Stops the server, the scheduler and the oracle, and closes their pool.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop_scheduler.send(true);
        let _ = self.stop.send(());
        self.server.await??;
        for running in self.loops {
            let _ = running.await;
        }
        self.background.close().await;
        Ok(())
    }
}

/// Exchanges an API key for a token.
pub async fn token(http: &reqwest::Client, base: &str, api_key: &str) -> anyhow::Result<String> {
    let reply: Value = http
        .post(format!("{base}/v1/auth/token"))
        .json(&json!({"api_key": api_key}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(reply["token"].as_str().context("token")?.to_owned())
}

