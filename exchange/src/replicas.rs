//! The replicas on one database agree on their secrets, or the newcomer does not start.
//!
//! The JWT secret and the oracle's key must be the same on every replica (a token issued by one
//! is presented to another; every replica serves the one oracle's signed rounds). On one machine
//! replicas share the generated files of their data directory; on several machines the operator
//! gives each the same `PCX_JWT_SECRET[_FILE]` and `PCX_ORACLE_KEY[_FILE]`. A replica that was
//! not given them would generate its own and quietly split the market, so each `pcx serve`
//! registers in `replicas` (migration 0011) with the fingerprints of its secrets, under a lock
//! that makes replicas starting together take turns, and refuses to start beside a live replica
//! whose secrets differ ([`disagreement`]). During a JWT rotation a replica with the new secret
//! may run beside one with the old secret it still accepts. Each replica renews its row every
//! [`RENEW`] and deletes it when it stops; a row not renewed for [`STALE`] is a replica that
//! died, and no longer counts (nor, at once, does one from this machine whose process is gone).

use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;

use crate::store;
pub use crate::store::replicas::ReplicaRow;

/// How often a replica renews its row.
pub const RENEW: Duration = Duration::from_secs(5);
/// A row not renewed for this long belongs to a replica that died.
pub const STALE: Duration = Duration::from_secs(30);

/// Why `mine` may not run beside the live replica `theirs`, if it may not.
pub fn disagreement(mine: &ReplicaRow, theirs: &ReplicaRow) -> Option<String> {
    if !mine.oracle_signer.eq_ignore_ascii_case(&theirs.oracle_signer) {
        return Some(format!(
            "it signs oracle rounds as {}, this replica as {}: give every replica the same PCX_ORACLE_KEY or \
             PCX_ORACLE_KEY_FILE",
            theirs.oracle_signer, mine.oracle_signer
        ));
    }
    if let (Some(mine), Some(theirs)) = (&mine.webhook_key_fingerprint, &theirs.webhook_key_fingerprint) {
        if mine != theirs {
            return Some(
                "it seals webhook secrets with another key: give every replica the same PCX_WEBHOOK_KEY or \
                 PCX_WEBHOOK_KEY_FILE"
                    .to_owned(),
            );
        }
    }
    // The same secret, or the two sides of a rotation (one accepts the other's tokens).
    let rotation = mine.previous_jwt_fingerprint.as_deref() == Some(theirs.jwt_fingerprint.as_str())
        || theirs.previous_jwt_fingerprint.as_deref() == Some(mine.jwt_fingerprint.as_str());
    if mine.jwt_fingerprint != theirs.jwt_fingerprint && !rotation {
        return Some(
            "it signs tokens with another JWT secret: give every replica the same PCX_JWT_SECRET or \
             PCX_JWT_SECRET_FILE (a token issued by one replica must verify on every other)"
                .to_owned(),
        );
    }
    None
}

/// Registers `mine`, unless a live replica disagrees with it (then start-up fails, saying which
/// and what to set).
pub async fn register(db: &PgPool, mine: &ReplicaRow) -> anyhow::Result<()> {
    let mut tx = db.begin().await.context("registering the replica")?;
    store::replicas::lock_registrations(&mut tx).await?;
    for (theirs, seen_ago) in store::replicas::live(&mut tx, STALE.as_secs_f64()).await? {
        if theirs.id == mine.id || gone_from_this_host(mine, &theirs) {
            continue;
        }
        if let Some(why) = disagreement(mine, &theirs) {
            anyhow::bail!(
                "another pcx replica runs on this database with other secrets (host {}, pid {}, seen {seen_ago:.0} s \
                 ago): {why}. See docs/DEPLOY.md, \"Secrets\"",
                theirs.host,
                theirs.pid
            );
        }
    }
    store::replicas::upsert(&mut tx, mine).await?;
    tx.commit().await.context("registering the replica")?;
    Ok(())
}

/// Renews `mine` every [`RENEW`] until `shutdown`, then deletes it.
pub async fn keep(db: PgPool, mine: ReplicaRow, shutdown: tokio::sync::watch::Receiver<bool>) {
    let renewing = (db.clone(), mine.clone());
    crate::periodic::supervised("replica renewal", RENEW, shutdown, move || {
        let (db, mine) = renewing.clone();
        async move {
            let renewed = async { store::replicas::upsert(&mut *db.acquire().await?, &mine).await };
            if let Err(err) = renewed.await {
                tracing::debug!(error = %err, "renewing the replica's row failed; retrying");
            }
        }
    })
    .await;
    let removed = async { store::replicas::remove(&mut *db.acquire().await?, mine.id).await };
    if let Err(err) = removed.await {
        tracing::debug!(error = %err, "removing the replica's row failed; it goes stale");
    }
}

/// Whether `theirs` ran on this machine and its process is gone (killed, then this one started
/// in its place): its row need not wait out [`STALE`].
fn gone_from_this_host(mine: &ReplicaRow, theirs: &ReplicaRow) -> bool {
    theirs.host == mine.host
        && (theirs.pid == mine.pid || !std::path::Path::new(&format!("/proc/{}", theirs.pid)).exists())
}

/// This machine's name, for the operator reading `replicas`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn replica(jwt: &str, previous: Option<&str>, signer: &str) -> ReplicaRow {
        ReplicaRow {
            id: Uuid::new_v4(),
            host: "h".into(),
            pid: 1,
            jwt_fingerprint: jwt.into(),
            previous_jwt_fingerprint: previous.map(Into::into),
            oracle_signer: signer.into(),
            webhook_key_fingerprint: Some("w".into()),
        }
    }

    #[test]
    fn replicas_must_share_the_oracle_key_and_the_jwt_secret_or_be_the_two_sides_of_a_rotation() {
        let a = "0xAbC0000000000000000000000000000000000001";
        assert_eq!(disagreement(&replica("j1", None, a), &replica("j1", None, &a.to_lowercase())), None);
        assert!(disagreement(&replica("j1", None, a), &replica("j1", None, "0x0000000000000000000000000000000000000002"))
            .is_some_and(|why| why.contains("PCX_ORACLE_KEY")));
        assert!(disagreement(&replica("j1", None, a), &replica("j2", None, a)).is_some_and(|why| why.contains("PCX_JWT_SECRET")));
        // After `pcx secrets rotate-jwt`: the new replica accepts the old one's tokens, either way round.
        assert_eq!(disagreement(&replica("j2", Some("j1"), a), &replica("j1", None, a)), None);
        assert_eq!(disagreement(&replica("j1", None, a), &replica("j2", Some("j1"), a)), None);
        assert!(disagreement(&replica("j3", Some("j2"), a), &replica("j1", None, a)).is_some());
        let other_webhook_key = ReplicaRow { webhook_key_fingerprint: Some("v".into()), ..replica("j1", None, a) };
        assert!(disagreement(&replica("j1", None, a), &other_webhook_key).is_some_and(|why| why.contains("PCX_WEBHOOK_KEY")));
        let older_version = ReplicaRow { webhook_key_fingerprint: None, ..replica("j1", None, a) };
        assert_eq!(disagreement(&replica("j1", None, a), &older_version), None);
    }
}
