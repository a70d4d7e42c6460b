//! A throw-away PostgreSQL database per test (so tests run in parallel),
//! and the store backends the store tests run on.
//!
//! PostgreSQL is required, never skipped: CI starts it on 127.0.0.1:5432
//! (trust auth, user `postgres`, database `test`). `HUBSYNC_TEST_PG` points
//! elsewhere.

use std::time::Duration;

use hubsync::store::{Store, StoreOptions};
use sqlx::Connection;

/// The maintenance database tests create their own databases from.
pub fn admin_url() -> String {
    std::env::var("HUBSYNC_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a postgres url ends in /DATABASE");
    format!("{base}/{db}")
}

/// A database that exists for one test and is dropped with it.
pub struct PgDb {
    pub url: String,
    name: String,
}

impl PgDb {
    pub async fn create() -> PgDb {
        let admin = admin_url();
        let name = format!("hubsync_test_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!("PostgreSQL must be running for these tests ({admin}): {e}; start it with `pg_ctlcluster --skip-systemctl-redirect 15 main start`")
        });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        conn.close().await.ok();
        PgDb {
            url: with_database(&admin, &name),
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // Drop runs inside a runtime; a fresh thread with its own runtime can
        // block on the DROP without upsetting it.
        let name = self.name.clone();
        let admin = admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds");
            rt.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            })
        })
        .join();
    }
}

/// One backend's database for a test; can open several stores on it (on
/// PostgreSQL, each is a separate instance with its own lease identity).
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(PgDb),
}

/// Short leases keep the lease tests quick.
pub const TEST_LEASE: Duration = Duration::from_millis(600);

impl Backend {
    pub async fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    pub async fn postgres() -> Backend {
        Backend::Postgres(PgDb::create().await)
    }

    pub fn url(&self) -> String {
        match self {
            Backend::Sqlite(dir) => format!("sqlite://{}", dir.path().join("hubsync.db").display()),
            Backend::Postgres(db) => db.url.clone(),
        }
    }

    pub async fn open(&self) -> Store {
        Store::open_with(&self.url(), &StoreOptions { lease: TEST_LEASE })
            .await
            .expect("open the store")
    }
}
