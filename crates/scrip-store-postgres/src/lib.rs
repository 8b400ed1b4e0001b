//! scrip-store-postgres: the broker's store on PostgreSQL.
//!
//! One job: keep the broker's state in a PostgreSQL schema, behind
//! [`scrip_core::store`]'s [`BrokerStore`](scrip_core::store::BrokerStore) and
//! [`GroupCommit`](scrip_core::store::GroupCommit), so that several broker
//! processes, each with its own [`PgBrokerStore`], serve one broker from one
//! database. It keeps the contract of the SQLite store
//! (`scrip-store-sqlite`'s `SqliteBrokerStore`) and its tables: responses,
//! accounts, pin_failures, balances, journal, spent_broker_scrip, merchants,
//! intents, payments, events, log_hashes, checkpoints.
//!
//! # The writer lock
//!
//! Every transaction and every group commit begins by locking the one row of
//! the table `writer` (`SELECT id FROM writer FOR UPDATE`): the schema's own
//! `BEGIN IMMEDIATE`. So broker steps, from any connection of any process,
//! run one after another, which gives:
//!
//! - one gap-free log: the next leaf is `MAX(seq) + 1` of what the step
//!   before committed, and no other step appends in between;
//! - exact read-then-write checks (balances, wrong PIN counts, the journal's
//!   next seq): nothing else writes between the read and the write;
//! - no deadlock: every step takes the same one lock first, before any other.
//!
//! A step waits up to ten seconds for the lock (`lock_timeout`), like the
//! SQLite store for its file's lock, then fails with a
//! [`StoreError`](scrip_core::store::StoreError) that is safe to retry.
//!
//! Under that lock transactions run READ COMMITTED: each statement sees every
//! step committed before, and no serialization failure needs a retry.
//!
//! Reads that change nothing ([`begin_read`](scrip_core::store::BrokerStore::begin_read):
//! the merchant directory, checkpoints and proofs, reports) take no writer
//! lock: `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`, one snapshot of
//! what had committed, so they are answered while a step of any process
//! holds the lock, and a checkpoint and the log hashes it covers are read as
//! of one moment.
//! Spending is still insert-or-fail on a unique key (`ON CONFLICT DO
//! NOTHING`; no row inserted is [`Spend::AlreadySpent`](scrip_core::store::Spend)),
//! never read-then-write, so it would stay exact without the lock.
//!
//! Inside a group commit each step is a savepoint of the group's transaction,
//! which holds the lock until the group commits. Unlike SQLite, PostgreSQL
//! refuses every statement of a transaction after one failed; the core drops
//! a step on its first error, which rolls it (or its savepoint) back, and a
//! commit after a failed statement is an error, never a silent rollback.
//!
//! # Migrations
//!
//! [`PgBrokerStore::connect`] brings the schema up to date in one
//! transaction under `pg_advisory_xact_lock`, so processes starting at once
//! migrate it once. `scrip_schema (role, version)` records what the schema
//! holds; a schema of another role, or of a newer version than this build,
//! is refused. Migrations are numbered and appended, never edited.
//!
//! # What it does not do
//!
//! TLS: it connects with `NoTls`, so the database must be on loopback or a
//! network trusted as much as the broker's own host. Like the SQLite store it
//! makes no decisions (the core does) and does not prune expired spent ids.
//! It does not reconnect by itself: a lost connection fails the step with a
//! [`StoreError`](scrip_core::store::StoreError), which the client may retry,
//! and [`PgBrokerStore::is_broken`] then says so, for the pool that holds the
//! store (`scrip-store`'s `BrokerPool`) to replace it.
//! Error messages never contain the URL's password, nor the rows or keys the
//! server quotes in its error details.

mod broker;
mod db;
pub mod testing;

#[cfg(test)]
mod tests;

pub use broker::{PgBrokerStore, PgBrokerTx};
