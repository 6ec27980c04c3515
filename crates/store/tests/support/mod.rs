//! Where a contract test's ledger lives: a SQLite file in a temporary
//! directory, or a PostgreSQL database of its own (`paysettle_t_<random>`)
//! on the server at `PAYSETTLE_TEST_POSTGRES` (a key-value connection
//! string; default `host=127.0.0.1 port=5432 user=postgres dbname=test
//! sslmode=disable`),
//! dropped when the test ends, failed or not.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use paysettle_sqlite::rusqlite;
use paysettle_store::{Ledger, LedgerOptions, LedgerTarget, PgOptions, StoreError};

/// Which backend a contract test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// The server the PostgreSQL tests use.
pub fn admin_url() -> String {
    std::env::var("PAYSETTLE_TEST_POSTGRES").unwrap_or_else(|_| {
        "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable".to_owned()
    })
}

/// A database of one test's own, dropped with this guard (also when the
/// test panics).
#[derive(Debug)]
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL for the tests is not reachable at `{}`: {e}",
                admin_url()
            )
        });
    tokio::spawn(connection);
    client
}

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let name = format!("paysettle_t_{}", uuid::Uuid::new_v4().simple());
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = format!("{} dbname={name}", admin_url());
        PgDatabase { name, url }
    }

    /// A client on this database, for a test's own SQL.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on
        // itself: the database is dropped from a thread with a runtime of
        // its own, and waited for.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                admin()
                    .await
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("the test database {} could not be dropped", self.name);
        }
    }
}

/// One test's ledger place.
#[derive(Debug)]
pub struct Place {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pub db: Option<PgDatabase>,
}

impl Place {
    pub async fn new(kind: Kind) -> Place {
        let dir = tempfile::tempdir().unwrap();
        let db = match kind {
            Kind::Sqlite => None,
            Kind::Postgres => Some(PgDatabase::create().await),
        };
        Place { kind, dir, db }
    }

    pub fn sqlite_path(&self) -> std::path::PathBuf {
        self.dir.path().join("ledger.db")
    }

    pub fn target(&self) -> LedgerTarget {
        match &self.db {
            None => LedgerTarget::Sqlite(self.sqlite_path()),
            Some(db) => LedgerTarget::Postgres(PgOptions {
                url: db.url.clone(),
                pool_size: 4,
                ..PgOptions::default()
            }),
        }
    }

    pub async fn open_with(&self, options: LedgerOptions) -> Result<Ledger, StoreError> {
        Ledger::connect(&self.target(), options).await
    }

    pub async fn open(&self) -> Ledger {
        self.open_with(LedgerOptions::default()).await.unwrap()
    }

    /// Runs a statement the test needs (breaking the ledger on purpose)
    /// beside the ledger, in plain SQL both backends read alike.
    pub async fn exec(&self, sql: &str) {
        match &self.db {
            None => {
                rusqlite::Connection::open(self.sqlite_path())
                    .unwrap()
                    .execute_batch(sql)
                    .unwrap();
            }
            Some(db) => db.client().await.batch_execute(sql).await.unwrap(),
        }
    }

    /// The number a query of one integer returns.
    pub async fn count(&self, sql: &str) -> i64 {
        match &self.db {
            None => rusqlite::Connection::open(self.sqlite_path())
                .unwrap()
                .query_row(sql, [], |r| r.get(0))
                .unwrap(),
            Some(db) => db.client().await.query_one(sql, &[]).await.unwrap().get(0),
        }
    }
}

/// Runs each named `async fn name(kind: Kind)` as two tests,
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Kind::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Kind::Postgres).await
                }
            )*
        }
    };
}
