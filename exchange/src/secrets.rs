//! Where the exchange's own secrets live: the JWT secret, the oracle's signing key, the webhook
//! key and the operator's (admin) API key.
//!
//! Each comes from the environment or a file the operator names (`PCX_JWT_SECRET[_FILE]`,
//! `PCX_ORACLE_KEY[_FILE]`, `PCX_WEBHOOK_KEY[_FILE]`, `PCX_ADMIN_API_KEY`); when none is given it is generated once into
//! a file of mode 0600 in `<data dir>/secrets/` (a directory of mode 0700), never into a table
//! every database reader can select, and never into a log. Of the admin key only its SHA-256 is
//! kept in the database; the key itself is shown once, on the terminal that started the server
//! when there is one, and stays in its 0600 file, whose path the log names.
//!
//! Older versions kept generated secrets in the `secrets` table; [`migrate_legacy`] moves them
//! to their files (keeping the admin key working) and deletes the rows.
//!
//! Rotation (`pcx secrets rotate-jwt`): the current JWT secret moves to `jwt_secret.previous`
//! with the time until which its tokens are still accepted (a token lifetime by default), and a
//! new one is written; servers started afterwards sign with the new one and accept both.

use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// File names under the secrets directory.
pub const JWT_SECRET: &str = "jwt_secret";
/// The JWT secret before the last rotation: `<secret>\n<RFC 3339 time it stops being accepted>`.
pub const JWT_SECRET_PREVIOUS: &str = "jwt_secret.previous";
/// The oracle's signing key (hex).
pub const ORACLE_KEY: &str = "oracle_key";
/// The generated operator API key.
pub const ADMIN_API_KEY: &str = "admin_api_key";
/// The key that seals webhook endpoints' signing secrets (hex).
pub const WEBHOOK_KEY: &str = "webhook_key";

/// The secrets directory of a data directory.
#[derive(Debug, Clone)]
pub struct SecretsDir {
    dir: PathBuf,
}

impl SecretsDir {
    /// `<data_dir>/secrets`.
    pub fn new(data_dir: &Path) -> SecretsDir {
        SecretsDir { dir: data_dir.join("secrets") }
    }

    /// The file of secret `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Secret `name` from its file, or `generate`d into a new 0600 file; `true` when it was made
    /// now. Two processes starting at once agree: the file is created exclusively and the loser
    /// reads the winner's.
    pub fn load_or_create(&self, name: &str, generate: impl FnOnce() -> String) -> anyhow::Result<(String, bool)> {
        let path = self.path(name);
        if let Some(existing) = read_secret(&path)? {
            return Ok((existing, false));
        }
        let value = generate();
        match self.write_new(name, &value) {
            Ok(()) => Ok((value, true)),
            Err(err) if err.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == ErrorKind::AlreadyExists) => {
                read_secret(&path)?.map(|v| (v, false)).with_context(|| format!("{} is empty", path.display()))
            }
            Err(err) => Err(err),
        }
    }

    /// Writes a secret that must not exist yet (mode 0600, directory 0700). The file appears whole
    /// or not at all (written aside, then hard-linked into place, which fails if it exists), so
    /// replicas starting together on one data directory race safely: one writes, the others read
    /// what it wrote, never an empty or half-written file.
    pub fn write_new(&self, name: &str, value: &str) -> anyhow::Result<()> {
        // Only the secrets directory itself is 0700: the data directory above it holds other
        // things (the private cluster's files, owned by another user who must reach them).
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        match DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {}
            Err(err) => return Err(err).with_context(|| format!("creating {}", self.dir.display())),
        }
        let path = self.path(name);
        let aside = self.dir.join(format!(".{name}.{}.{}.new", std::process::id(), uuid::Uuid::new_v4().simple()));
        let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&aside)?;
        let written = file.write_all(value.as_bytes()).and_then(|()| file.sync_all());
        let linked = written.and_then(|()| std::fs::hard_link(&aside, &path));
        let _ = std::fs::remove_file(&aside);
        // An `AlreadyExists` stays an io::Error, which `load_or_create` recognises.
        linked.map_err(anyhow::Error::from)
    }

    /// Replaces a secret (write to a temporary 0600 file, then rename over it).
    pub fn replace(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let temporary = format!(".{name}.{}", std::process::id());
        let _ = std::fs::remove_file(self.path(&temporary));
        self.write_new(&temporary, value)?;
        std::fs::rename(self.path(&temporary), self.path(name)).with_context(|| format!("replacing {}", self.path(name).display()))
    }
}

/// A secret file's content (trimmed), `None` when there is no such file. Refuses a file that
/// group or others may read: a secret anyone on the machine can read is not one.
pub fn read_secret(path: &Path) -> anyhow::Result<Option<String>> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    if metadata.permissions().mode() & 0o077 != 0 {
        anyhow::bail!("{} may be read by others (mode {:o}); chmod 600 it", path.display(), metadata.permissions().mode() & 0o777);
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(text.trim().to_owned()))
}

/// The previous JWT secret and until when it is accepted, if a rotation left one.
pub fn previous_jwt_secret(dir: &SecretsDir) -> anyhow::Result<Option<(String, DateTime<Utc>)>> {
    let Some(text) = read_secret(&dir.path(JWT_SECRET_PREVIOUS))? else { return Ok(None) };
    let (secret, until) = text.split_once('\n').context("jwt_secret.previous: expected the secret, then a time")?;
    let until = DateTime::parse_from_rfc3339(until.trim()).context("jwt_secret.previous: the time is not RFC 3339")?;
    Ok(Some((secret.trim().to_owned(), until.with_timezone(&Utc))))
}

/// `pcx secrets rotate-jwt`: a new JWT secret; the old one stays accepted until `until`.
pub fn rotate_jwt(dir: &SecretsDir, new_secret: &str, until: DateTime<Utc>) -> anyhow::Result<()> {
    let current = read_secret(&dir.path(JWT_SECRET))?
        .context("there is no generated JWT secret to rotate here (it may come from PCX_JWT_SECRET or a file you named)")?;
    dir.replace(JWT_SECRET_PREVIOUS, &format!("{current}\n{}", until.to_rfc3339()))?;
    dir.replace(JWT_SECRET, new_secret)
}

/// Moves secrets older versions kept in the `secrets` table into their files (the admin key's
/// hash goes to `admin_api_key_hash`), then deletes those rows.
pub async fn migrate_legacy(db: &PgPool, dir: &SecretsDir) -> anyhow::Result<()> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, value FROM server_secrets WHERE name IN ('jwt_secret', 'oracle_key', 'admin_api_key')")
            .fetch_all(db)
            .await
            .context("reading legacy secrets")?;
    for (name, value) in rows {
        if read_secret(&dir.path(&name))?.is_none() {
            dir.write_new(&name, &value)?;
        }
        if name == ADMIN_API_KEY {
            store_admin_key_hash(db, &crate::auth::hash_api_key(&value)).await?;
        }
        sqlx::query("DELETE FROM server_secrets WHERE name = $1").bind(&name).execute(db).await?;
        tracing::warn!(secret = %name, path = %dir.path(&name).display(), "moved a secret out of the database into its 0600 file");
    }
    Ok(())
}

/// The stored SHA-256 of the generated admin key, if one was made.
pub async fn admin_key_hash(db: &PgPool) -> anyhow::Result<Option<Vec<u8>>> {
    let hex_hash: Option<String> = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'admin_api_key_hash'")
        .fetch_optional(db)
        .await
        .context("reading the admin key's hash")?;
    hex_hash.map(|h| hex::decode(h).context("the stored admin key hash is not hex")).transpose()
}

/// Stores the admin key's SHA-256 (the first one stored wins; it is the key of this market).
pub async fn store_admin_key_hash(db: &PgPool, hash: &[u8]) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO server_secrets (name, value) VALUES ('admin_api_key_hash', $1) ON CONFLICT (name) DO NOTHING")
        .bind(hex::encode(hash))
        .execute(db)
        .await
        .context("storing the admin key's hash")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_0600_made_once_and_refused_when_readable_by_others() {
        let root = std::env::temp_dir().join(format!("pcx-secrets-{}", uuid::Uuid::new_v4()));
        let dir = SecretsDir::new(&root);
        let (first, made) = dir.load_or_create("s", || "one".into()).unwrap();
        assert!(made);
        let (again, made) = dir.load_or_create("s", || "two".into()).unwrap();
        assert_eq!((again.as_str(), made), (first.as_str(), false));
        let mode = std::fs::metadata(dir.path("s")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(root.join("secrets")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
        std::fs::set_permissions(dir.path("s"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_secret(&dir.path("s")).is_err());
        std::fs::remove_dir_all(root).ok();
    }

    #[test]
    fn replicas_racing_on_a_fresh_data_directory_all_get_the_one_secret() {
        for _ in 0..20 {
            let root = std::env::temp_dir().join(format!("pcx-secrets-{}", uuid::Uuid::new_v4()));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let (root, barrier) = (root.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        SecretsDir::new(&root).load_or_create("s", || format!("secret-of-racer-{i}")).unwrap()
                    })
                })
                .collect();
            let got: Vec<(String, bool)> = racers.into_iter().map(|r| r.join().unwrap()).collect();
            assert_eq!(got.iter().filter(|(_, made)| *made).count(), 1, "one racer made it: {got:?}");
            assert!(got.iter().all(|(v, _)| v == &got[0].0 && !v.is_empty()), "all read the same whole secret: {got:?}");
            let left: Vec<_> = std::fs::read_dir(root.join("secrets")).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(left, ["s"], "nothing written aside is left behind");
            std::fs::remove_dir_all(root).ok();
        }
    }

    #[test]
    fn rotation_keeps_the_old_secret_until_the_grace_ends() {
        let root = std::env::temp_dir().join(format!("pcx-secrets-{}", uuid::Uuid::new_v4()));
        let dir = SecretsDir::new(&root);
        assert!(rotate_jwt(&dir, "new", Utc::now()).is_err(), "nothing to rotate yet");
        dir.load_or_create(JWT_SECRET, || "old".into()).unwrap();
        let until = Utc::now() + chrono::Duration::hours(1);
        rotate_jwt(&dir, "new", until).unwrap();
        assert_eq!(read_secret(&dir.path(JWT_SECRET)).unwrap().as_deref(), Some("new"));
        let (previous, kept_until) = previous_jwt_secret(&dir).unwrap().unwrap();
        assert_eq!(previous, "old");
        assert_eq!(kept_until.timestamp(), until.timestamp());
        std::fs::remove_dir_all(root).ok();
    }
}
