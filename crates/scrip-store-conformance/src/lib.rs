//! scrip-store-conformance: what every broker store must do, written once and run on each backend.
//!
//! One job: hold the cases that `scrip-store-sqlite` and
//! `scrip-store-postgres` both run, so the two backends are held to the
//! same behaviour, and the test values ([`fixtures`]) their tests share.
//! Like cdk's `mint_db_test!`, a backend's tests run every case with one line:
//!
//! ```text
//! scrip_store_conformance::broker_store_conformance!(backend());
//! ```
//!
//! where `backend()` gives an `Option` of a [`Backend`]: one database of
//! its own per case, or `None` to skip (PostgreSQL, when no server is
//! configured). Each case is its own `#[test]`, named after the case, so a
//! failure names the behaviour that broke.
//!
//! # What it does not do
//!
//! It is for tests only: the stores take it as a dev-dependency, and no
//! production crate depends on it. Cases that only one backend can fail
//! (PostgreSQL's writer lock and migrations, SQLite's file mode) stay in
//! that backend's crate. It knows SQL only to corrupt rows, as the stores'
//! own tests do.

pub mod broker;
pub mod fixtures;

pub use broker::Backend;

/// Defines one `#[test]` per broker store conformance case, each running
/// the case on the backend that `$backend` (an `Option<impl Backend>`,
/// evaluated afresh for every test) gives; `None` skips the test.
#[macro_export]
macro_rules! broker_store_conformance {
    ($backend:expr) => {
        $crate::broker_store_conformance!(@cases ($backend)
            state_survives_reopening
            dropping_a_transaction_without_commit_leaves_nothing
            spending_is_insert_or_fail
            racing_connections_spend_each_id_once
            posting_keeps_the_sum_of_balances_at_zero
            a_post_that_would_overflow_fails_and_writes_nothing
            put_merchant_replaces_by_id_and_names_stay_unique
            wrong_pin_counts_are_replaced_and_the_default_leaves_no_row
            corrupt_rows_are_errors_not_panics
            a_gap_in_the_log_is_an_error_of_the_snapshot
            the_fingerprint_shows_every_row_but_the_logs_and_only_changes_with_them
            a_step_dropped_inside_a_group_is_undone_alone
            abort_group_undoes_the_whole_group
            a_group_that_panicked_is_undone_and_frees_the_store
            end_group_makes_the_group_durable_and_visible_to_another_connection
            a_read_waits_for_no_writer_and_sees_one_snapshot
        );
    };
    (@cases ($backend:expr) $($case:ident)*) => {
        $(
            #[test]
            fn $case() {
                if let Some(backend) = $backend {
                    $crate::broker::$case(&backend);
                }
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    /// A case left out of the macro's list would compile and never run.
    #[test]
    fn the_macro_runs_every_case() {
        let cases = include_str!("broker.rs");
        let macro_source = include_str!("lib.rs");
        let listed: Vec<&str> = macro_source
            .split("@cases ($backend)")
            .nth(1)
            .and_then(|list| list.split(");").next())
            .expect("the macro's list of cases")
            .split_whitespace()
            .collect();
        let defined: Vec<&str> = cases
            .lines()
            .filter_map(|line| line.strip_prefix("pub fn "))
            .filter_map(|rest| rest.split('<').next())
            .collect();
        assert!(!defined.is_empty());
        assert_eq!(listed, defined);
    }
}
