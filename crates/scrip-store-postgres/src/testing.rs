//! For tests, here and in other crates: a throwaway schema per test in the
//! database that `SCRIP_TEST_POSTGRES_URL` names, and the note that says the
//! PostgreSQL tests were skipped when it is not set.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use scrip_core::store::StoreError;

use crate::db::{blocking, describe, redact};

/// The variable naming the database the PostgreSQL tests run in.
pub const TEST_URL_VARIABLE: &str = "SCRIP_TEST_POSTGRES_URL";

/// The database to run PostgreSQL tests in, if `SCRIP_TEST_POSTGRES_URL` is set.
pub fn test_url() -> Option<String> {
    std::env::var(TEST_URL_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty())
}

/// Says, once per test binary, that the PostgreSQL tests were skipped.
///
/// Written to the process's stderr directly: libtest captures `eprintln!`
/// of a passing test, and a skip must not pass unseen.
pub fn skipped() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "note: {TEST_URL_VARIABLE} is not set: PostgreSQL tests skipped"
        );
    });
}

/// A fresh, uniquely named schema, dropped with everything in it when this is.
///
/// Every connection opened with [`url`](Self::url) works in this schema, so
/// two stores connected with it are two processes sharing one database.
pub struct TestSchema {
    base: String,
    name: String,
}

impl TestSchema {
    /// Creates the schema in the database at `base_url`.
    ///
    /// # Errors
    /// The database cannot be reached or the schema cannot be created.
    pub fn new(base_url: &str) -> Result<TestSchema, StoreError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "scrip_test_{}_{}_{:016x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u64>()
        );
        admin(base_url, &format!("CREATE SCHEMA {name}"))?;
        Ok(TestSchema {
            base: base_url.to_owned(),
            name,
        })
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The base URL with `options=-csearch_path=<schema>`: the server sets
    /// the connection's `search_path` at login, before any statement runs.
    pub fn url(&self) -> String {
        let separator = if self.base.contains('?') { '&' } else { '?' };
        format!(
            "{}{separator}options=-csearch_path%3D{}",
            self.base, self.name
        )
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        if let Err(error) = admin(&self.base, &sql) {
            let _ = writeln!(
                std::io::stderr(),
                "warning: cannot drop test schema {}: {error}",
                self.name
            );
        }
    }
}

/// Runs one statement on a connection of its own.
fn admin(url: &str, sql: &str) -> Result<(), StoreError> {
    blocking(|| admin_blocking(url, sql))
}

fn admin_blocking(url: &str, sql: &str) -> Result<(), StoreError> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(|error| {
        StoreError(format!(
            "cannot connect to {}: {}",
            redact(url),
            describe(&error)
        ))
    })?;
    client
        .batch_execute(sql)
        .map_err(|error| StoreError(format!("{sql}: {}", describe(&error))))
}
