//! scrip-store-sqlite: the SQLite adapters for scrip-core's store traits.
//!
//! One job: keep the broker's, a merchant's and a wallet's state in a SQLite
//! file, behind [`scrip_core::store`]'s [`BrokerStore`](scrip_core::store::BrokerStore),
//! [`MerchantStore`](scrip_core::store::MerchantStore) and
//! [`WalletStore`](scrip_core::store::WalletStore).
//!
//! | store | tables |
//! |---|---|
//! | [`SqliteBrokerStore`] | responses, accounts, pin_failures, balances, journal, spent_broker_scrip, merchants, intents, payments, events, log_hashes, checkpoints |
//! | [`SqliteMerchantStore`] | responses, spent, outbox |
//! | [`SqliteWalletStore`] | scrip, pending, receipts |
//!
//! # What it does not do
//!
//! It makes no decisions: it does not check PINs, stamps, proofs, prices or
//! whether a balance may go negative. The core does, inside one transaction;
//! this crate only makes that transaction atomic, serialised and durable. It
//! does not prune expired spent ids, read the clock, or encrypt the file: the
//! file is protected by its owner-only mode (0600).
//!
//! # Guarantees
//!
//! - Every transaction is `BEGIN IMMEDIATE`: writers on the same file, from
//!   any thread or process, run one after another, and a writer waits up to
//!   ten seconds for the lock before failing with a [`StoreError`](scrip_core::store::StoreError).
//! - Dropping a transaction without `commit` rolls it back.
//! - Spending (a scrip id, a recorded payment) is insert-or-fail, so of two
//!   racing transactions exactly one gets `Spend::Fresh`: on a primary key
//!   at the broker; at a merchant, a check of its spent index in memory and
//!   an appended row under the write lock, the index brought up to date
//!   from the file when the lock was taken (`merchant.rs`).
//! - A committed transaction survives a crash or power cut (`journal_mode=WAL`,
//!   `synchronous=FULL`). That costs one fsync per commit, which bounds a
//!   broker at a few hundred to a few thousand steps per second depending on
//!   the disk; batching several steps per transaction is the way past it.
//!   The one exception is a wallet's settling transaction
//!   (`WalletStore::begin_settle`): it commits atomically but without waiting
//!   for the disk, and a power cut may lose it; the request it settled is then
//!   pending again, to be resent.
//! - Stored values that do not decode are reported as corrupt, never a panic.
//!
//! # Example
//!
//! ```
//! use scrip_core::store::{WalletStore, WalletTx};
//! use scrip_store_sqlite::SqliteWalletStore;
//!
//! let mut store = SqliteWalletStore::open_in_memory()?;
//! let mut tx = store.begin()?;
//! assert!(tx.all_scrip()?.is_empty());
//! tx.commit()?;
//! # Ok::<(), scrip_core::store::StoreError>(())
//! ```

mod broker;
mod db;
mod merchant;
mod wallet;

#[cfg(test)]
mod fixtures;

pub use broker::{SqliteBrokerStore, SqliteBrokerTx};
pub use merchant::{SqliteMerchantStore, SqliteMerchantTx};
pub use wallet::{SqliteWalletStore, SqliteWalletTx};
