//! scrip-core: the broker, the merchant and the wallet of scrip as sans-IO state machines.
//!
//! # scrip-core does no I/O
//!
//! Like quinn-proto under quinn, this crate holds the whole payment protocol
//! and none of the plumbing. It opens no sockets, starts no runtime, reads no
//! clock and writes no files. Requests come in as values (or canonical
//! bytes), with `now` and a `CryptoRng`; storage is reached only through the
//! small synchronous traits of [`store`], which adapters implement (SQLite in
//! `scrip-store-sqlite`).
//!
//! ```text
//!             bytes / BrokerRequest                    Transfer, BrokerEvent
//!   node  ──────────────────────────▶  Broker::handle ─────────────────────▶ BrokerTx (one transaction)
//!         ◀──────────────────────────                 ◀───────────────────── balances, spent ids
//!             BrokerResponse
//!
//!   node  ── MerchantRequest ──▶ Merchant::handle ──▶ MerchantTx (spent set, outbox of payment records)
//!   node  ◀─ Signed<PaymentRecords> ── Merchant::poll_payment_records
//!
//!   cli   ── Wallet::buy ─▶ PendingPurchase (intent bytes for the broker, buy bytes for the merchant)
//!   cli   ── responses ──▶ Wallet::handle_*_response ──▶ WalletTx (scrip, secrets, receipts)
//! ```
//!
//! # Invariants
//!
//! - Every broker step that moves value posts one balanced [`ledger::Transfer`]
//!   in the same store transaction as the rest of the step.
//! - A refusal commits nothing; a retried request id returns the stored response.
//! - A merchant validates VendorScrip with no network call.
//! - No merchant type holds an account number or PIN after registration.

pub mod audit;
pub mod broker;
pub mod event;
pub mod keys;
pub mod ledger;
pub mod log;
pub mod merchant;
mod parallel;
pub mod store;
pub mod validate;
pub mod wallet;

pub use broker::{Broker, BrokerConfig, Prepared};
pub use keys::{BrokerKeys, MerchantKeys, PinHashing, WalletKeys};
pub use merchant::{CatalogItem, Merchant, MerchantConfig};
pub use wallet::{Wallet, WalletError};
