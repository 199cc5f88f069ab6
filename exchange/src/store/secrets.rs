//! Generated server secrets, persisted so that they survive restarts.

use sqlx::PgPool;

/// The stored secret `name`, creating it with `generate` on first use. Safe under concurrent
/// start-ups: the first insert wins and everyone reads the winner.
pub async fn get_or_create(
    pool: &PgPool,
    name: &str,
    generate: impl FnOnce() -> String,
) -> Result<String, sqlx::Error> {
    sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(generate())
        .execute(pool)
        .await?;
    sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
        .bind(name)
        .fetch_one(pool)
        .await
}
