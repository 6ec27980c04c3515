//! One test's own PostgreSQL database, created on the test server and
//! dropped when the guard goes, passed or failed.
//!
//! The database is made and dropped with `psql` (the client every machine
//! with the server has), not with a PostgreSQL client library: only the
//! store crate may link one. The server is `PAYSETTLE_TEST_PG_HOST`
//! (default 127.0.0.1), port 5432, user `postgres`, trust authentication,
//! as on the machines the suite runs on.

use std::process::Command;

/// A database of one test's own.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    /// `postgres://postgres@HOST:5432/NAME?sslmode=disable` (the server is on
    /// this host): what `ledger.url` is set to.
    pub url: String,
    host: String,
}

fn host() -> String {
    std::env::var("PAYSETTLE_TEST_PG_HOST").unwrap_or_else(|_| "127.0.0.1".to_owned())
}

fn psql(host: &str, sql: &str) -> Result<(), String> {
    let output = Command::new("psql")
        .args(["-h", host, "-p", "5432", "-U", "postgres", "-d", "test"])
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .map_err(|e| format!("psql could not be run: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

impl TestDatabase {
    /// Creates `paysettle_e_<random>` on the test server.
    pub fn create() -> Result<TestDatabase, String> {
        let host = host();
        let name = format!("paysettle_e_{}", uuid::Uuid::new_v4().simple());
        psql(&host, &format!("CREATE DATABASE {name}"))
            .map_err(|e| format!("creating the test database on {host}:5432: {e}"))?;
        Ok(TestDatabase {
            url: format!("postgres://postgres@{host}:5432/{name}?sslmode=disable"),
            name,
            host,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // WITH (FORCE): a worker the test killed may have left a session.
        if let Err(e) = psql(
            &self.host,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        ) {
            eprintln!("the test database {} was not dropped: {e}", self.name);
        }
    }
}
