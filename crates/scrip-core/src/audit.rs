//! The audit: checks a broker's stored state against its own transparency
//! log, with the broker's public key only.
//!
//! [`audit`] takes a [`BrokerSnapshot`] (every table, raw) and:
//! 1. **log**: recomputes every leaf and tree hash (RFC 6962), checks each
//!    signed checkpoint's signature and root, and that the latest covers the
//!    whole log;
//! 2. **ledger**: replays the events into balances, journal, accounts,
//!    wrong PINs in a row and account locks, merchants, spent BrokerScrip,
//!    intents and payments, and compares each with its table;
//! 3. **matching**: payments without their customer's intent, and intents
//!    older than [`INTENT_GRACE`] without their payment, are listed;
//! 4. **conservation**: deposits − withdrawals = accounts + outstanding scrip;
//! 5. **misuse**: merchants claiming more than was sold for them; refused
//!    double spends and wrong PINs are counted, and accounts locked after
//!    wrong PINs, and unlocked by the operator, are listed.
//!
//! Every discrepancy is a [`Finding`] naming the table and row or the leaf,
//! what was expected and what was found.

use std::collections::{BTreeMap, BTreeSet};

use scrip_proto::msg::PaymentRecord;
use scrip_proto::{decode, AccountNumber, MerchantId, PublicKey, RequestId, Timestamp};
use tlog_tiles::{Hash, HashReader};

use crate::event::BrokerEvent;
use crate::ledger::{LedgerAccount, TransferKind};
use crate::log::{verify_checkpoint, VerifiedCheckpoint};
use crate::store::{BrokerSnapshot, PinFailures};

/// How long an intent may wait for its payment record before the audit calls it unmatched.
pub const INTENT_GRACE: u64 = 3600;

/// Which of the five checks a finding belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    Log,
    Ledger,
    Matching,
    Conservation,
    Misuse,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Check::Log => "log",
            Check::Ledger => "ledger",
            Check::Matching => "matching",
            Check::Conservation => "conservation",
            Check::Misuse => "misuse",
        })
    }
}

/// One discrepancy: where, what was expected, what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: Check,
    pub location: String,
    pub expected: String,
    pub found: String,
}

/// What the audit saw and found.
#[derive(Debug, Clone, Default)]
pub struct AuditReport {
    pub findings: Vec<Finding>,
    pub log_size: u64,
    pub latest_checkpoint: Option<VerifiedCheckpoint>,
    pub refused_double_spends: u64,
    /// Wrong PINs per account.
    pub refused_pins: BTreeMap<AccountNumber, u64>,
    /// Every lock after too many wrong PINs, in log order: the account, when
    /// it was locked, and until when (`None`: until the operator unlocks it).
    pub account_locks: Vec<(AccountNumber, Timestamp, Option<Timestamp>)>,
    /// Every unlock by the operator, in log order: the account and when.
    pub account_unlocks: Vec<(AccountNumber, Timestamp)>,
    /// The accounts whose lock is in force at the time of the audit, with its end.
    pub locked_accounts: BTreeMap<AccountNumber, Option<Timestamp>>,
    /// Intents younger than the grace period still waiting for their payment.
    pub pending_intents: u64,
    /// Intents older than the grace period with no payment record (listed, not failed).
    pub unmatched_intents: Vec<String>,
    /// Payments credited with no customer intent (listed, not failed).
    pub unmatched_payments: Vec<String>,
}

impl AuditReport {
    /// True when all five checks hold.
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }

    fn find(
        &mut self,
        check: Check,
        location: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) {
        self.findings.push(Finding {
            check,
            location: location.into(),
            expected: expected.into(),
            found: found.into(),
        });
    }
}

/// Stored hashes kept in memory while the tree is recomputed.
struct Recomputed(Vec<Hash>);

impl HashReader for Recomputed {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.0
                    .get(*i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// Audits `snapshot` against the broker key `broker`, at time `now`.
pub fn audit(broker: &PublicKey, snapshot: &BrokerSnapshot, now: Timestamp) -> AuditReport {
    audit_with_progress(broker, snapshot, now, &mut |_, _| {})
}

/// As [`audit`], calling `progress(leaves_done, leaves_total)` while it
/// recomputes the log, the long part of a large audit.
pub fn audit_with_progress(
    broker: &PublicKey,
    snapshot: &BrokerSnapshot,
    now: Timestamp,
    progress: &mut dyn FnMut(u64, u64),
) -> AuditReport {
    let mut report = AuditReport {
        log_size: snapshot.leaves.len() as u64,
        ..AuditReport::default()
    };
    check_log(broker, snapshot, &mut report, progress);
    let events = decode_events(snapshot, &mut report);
    let replay = Replay::run(&events, &mut report);
    compare_ledger(&replay, snapshot, &mut report);
    check_matching(&replay, now, &mut report);
    list_locked_accounts(&replay, now, &mut report);
    check_conservation(&replay, snapshot, &mut report);
    report
}

/// Minor units as a decimal amount, signed: `-12.50`.
fn money(minor: impl Into<i128>) -> String {
    let minor: i128 = minor.into();
    let shown = u64::try_from(minor.unsigned_abs())
        .ok()
        .and_then(scrip_proto::Amount::from_minor)
        .map(|a| a.to_string())
        .unwrap_or_else(|| format!("{minor} minor units"));
    if minor < 0 {
        format!("-{shown}")
    } else {
        shown
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_log(
    broker: &PublicKey,
    snapshot: &BrokerSnapshot,
    report: &mut AuditReport,
    progress: &mut dyn FnMut(u64, u64),
) {
    let mut tree = Recomputed(Vec::new());
    let total = snapshot.leaves.len() as u64;
    for (index, leaf) in snapshot.leaves.iter().enumerate() {
        if index % 4096 == 0 {
            progress(index as u64, total);
        }
        match tlog_tiles::stored_hashes(index as u64, leaf, &tree) {
            Ok(hashes) => tree.0.extend(hashes),
            Err(error) => {
                return report.find(
                    Check::Log,
                    format!("log leaf {index}"),
                    "a computable tree",
                    error.to_string(),
                )
            }
        }
    }
    let stored: BTreeMap<u64, [u8; 32]> = snapshot.hashes.iter().copied().collect();
    if stored.len() != tree.0.len() {
        report.find(
            Check::Log,
            "table log_hashes",
            format!(
                "{} stored hashes for {} leaves",
                tree.0.len(),
                snapshot.leaves.len()
            ),
            format!("{} rows", stored.len()),
        );
    }
    let mut mismatches = 0;
    for (index, hash) in tree.0.iter().enumerate() {
        let found = stored.get(&(index as u64));
        if found != Some(&hash.0) && mismatches < 10 {
            mismatches += 1;
            let (level, n) = tlog_tiles::split_stored_hash_index(index as u64);
            let what = if level == 0 {
                format!("the hash of log leaf {n}")
            } else {
                format!("tree hash level {level} #{n}")
            };
            report.find(
                Check::Log,
                format!("table log_hashes row idx {index} ({what})"),
                hex(&hash.0),
                found.map(|h| hex(h)).unwrap_or_else(|| "missing".into()),
            );
        }
    }
    let size = snapshot.leaves.len() as u64;
    for (row_size, note) in &snapshot.checkpoints {
        let location = format!("table checkpoints row size {row_size}");
        let checkpoint = match verify_checkpoint(broker, note) {
            Ok(checkpoint) => checkpoint,
            Err(error) => {
                report.find(
                    Check::Log,
                    location,
                    format!("a checkpoint signed by broker key {broker}"),
                    error.to_string(),
                );
                continue;
            }
        };
        if checkpoint.size != *row_size {
            report.find(
                Check::Log,
                location.clone(),
                format!("a checkpoint of size {row_size}"),
                format!("size {}", checkpoint.size),
            );
        }
        if checkpoint.size > size {
            report.find(
                Check::Log,
                location,
                format!("at most the {size} leaves in the log"),
                format!(
                    "a signed checkpoint of {} leaves: the log was truncated or rolled back",
                    checkpoint.size
                ),
            );
            continue;
        }
        match tlog_tiles::tree_hash(checkpoint.size, &tree) {
            Ok(root) if root.0 == checkpoint.root => {}
            Ok(root) => report.find(
                Check::Log,
                location,
                format!("signed root {}", hex(&checkpoint.root)),
                format!(
                    "the log's leaves give root {}: leaves were altered, removed or reordered",
                    hex(&root.0)
                ),
            ),
            Err(error) => report.find(Check::Log, location, "a computable root", error.to_string()),
        }
        if report
            .latest_checkpoint
            .as_ref()
            .is_none_or(|latest| checkpoint.size >= latest.size)
        {
            report.latest_checkpoint = Some(checkpoint);
        }
    }
    let covered = report.latest_checkpoint.as_ref().map_or(0, |c| c.size);
    if covered != size {
        report.find(Check::Log, "table checkpoints (latest)", format!("a signed checkpoint of all {size} leaves"), format!("the latest valid checkpoint covers {covered}: entries were added without the broker's signature"));
    }
}

fn decode_events(snapshot: &BrokerSnapshot, report: &mut AuditReport) -> Vec<BrokerEvent> {
    let mut events = Vec::with_capacity(snapshot.leaves.len());
    for (index, leaf) in snapshot.leaves.iter().enumerate() {
        match decode::<BrokerEvent>(leaf) {
            Ok(event) => events.push(event),
            Err(error) => report.find(
                Check::Log,
                format!("log leaf {index}"),
                "a broker event",
                format!("bytes that do not decode ({error})"),
            ),
        }
    }
    events
}

/// The state the log says the broker should have.
#[derive(Default)]
struct Replay {
    /// i128, so a forged leaf with an absurd amount is a finding, never an overflow.
    balances: BTreeMap<LedgerAccount, i128>,
    journal: Vec<(TransferKind, LedgerAccount, LedgerAccount, i64)>,
    /// Account → (digest of the PIN hash, bound wallet key).
    accounts: BTreeMap<AccountNumber, ([u8; 32], Option<PublicKey>)>,
    /// Account → wrong PINs in a row and lock; absent: none.
    pin_failures: BTreeMap<AccountNumber, PinFailures>,
    /// Merchant → (credited account, name, digest of the licence).
    merchants: BTreeMap<MerchantId, (AccountNumber, String, [u8; 32])>,
    spent_broker_scrip: BTreeSet<Vec<u8>>,
    /// Intent request id → (buy request, scrip key, time).
    intents: BTreeMap<RequestId, (RequestId, Vec<u8>, Timestamp)>,
    /// (merchant, scrip key) → (price, intent seen, buy request).
    payments: BTreeMap<(MerchantId, Vec<u8>), (i64, bool, RequestId)>,
}

impl Replay {
    fn run(events: &[BrokerEvent], report: &mut AuditReport) -> Replay {
        let mut replay = Replay::default();
        for (index, event) in events.iter().enumerate() {
            replay.apply(index, event, report);
        }
        replay
    }

    fn transfer(
        &mut self,
        index: usize,
        kind: TransferKind,
        from: LedgerAccount,
        to: LedgerAccount,
        amount: i64,
        report: &mut AuditReport,
    ) {
        let balance = self.balances.entry(from).or_default();
        *balance -= i128::from(amount);
        if from.must_stay_non_negative() && *balance < 0 {
            let check = if matches!(from, LedgerAccount::OutstandingVendorScrip(_)) {
                Check::Misuse
            } else {
                Check::Ledger
            };
            report.find(
                check,
                format!("log leaf {index} ({kind})"),
                format!("{from} to cover {amount}"),
                format!("it would fall to {balance}: more was claimed than was issued"),
            );
        }
        *self.balances.entry(to).or_default() += i128::from(amount);
        self.journal.push((kind, from, to, amount));
    }

    fn apply(&mut self, index: usize, event: &BrokerEvent, report: &mut AuditReport) {
        use LedgerAccount::*;
        match event {
            BrokerEvent::AccountOpened {
                account, pin_hash, ..
            } => {
                self.accounts.insert(*account, (*pin_hash, None));
            }
            BrokerEvent::AccountKeyBound { account, key, .. } => {
                if let Some(entry) = self.accounts.get_mut(account) {
                    entry.1 = Some(*key);
                }
            }
            BrokerEvent::Deposit {
                account, amount, ..
            } => self.transfer(
                index,
                TransferKind::Deposit,
                MoneyIn,
                Customer(*account),
                amount.as_i64(),
                report,
            ),
            BrokerEvent::Withdrawal {
                account, amount, ..
            } => self.transfer(
                index,
                TransferKind::Withdrawal,
                Customer(*account),
                MoneyOut,
                amount.as_i64(),
                report,
            ),
            BrokerEvent::MerchantRegistered {
                merchant,
                account,
                name,
                licence,
                ..
            } => {
                // Registration authenticated the account: its wrong PINs are cleared.
                self.pin_failures.remove(account);
                self.merchants
                    .insert(*merchant, (*account, name.clone(), *licence));
            }
            BrokerEvent::BrokerScripIssued { account, value, .. } => {
                // So did this step.
                self.pin_failures.remove(account);
                self.transfer(
                    index,
                    TransferKind::ObtainBrokerScrip,
                    Customer(*account),
                    OutstandingBrokerScrip,
                    value.as_i64(),
                    report,
                )
            }
            BrokerEvent::VendorScripExchanged {
                spent,
                merchant,
                amount,
                ..
            } => {
                self.spend(index, spent.to_key().to_vec(), report);
                self.transfer(
                    index,
                    TransferKind::ObtainVendorScrip,
                    OutstandingBrokerScrip,
                    OutstandingVendorScrip(*merchant),
                    amount.as_i64(),
                    report,
                );
            }
            BrokerEvent::BrokerScripRenewed { spent, .. } => {
                self.spend(index, spent.to_key().to_vec(), report)
            }
            BrokerEvent::IntentRecorded {
                request,
                buy_request,
                scrip,
                at,
                ..
            } => {
                self.intents
                    .insert(*request, (*buy_request, scrip.to_key().to_vec(), *at));
            }
            BrokerEvent::PaymentRecorded {
                merchant,
                buy_request,
                scrip,
                price,
                intent_seen,
                ..
            } => {
                let key = (*merchant, scrip.to_key().to_vec());
                if self
                    .payments
                    .insert(key, (price.as_i64(), *intent_seen, *buy_request))
                    .is_some()
                {
                    report.find(
                        Check::Ledger,
                        format!("log leaf {index}"),
                        format!("one payment record for scrip {scrip}"),
                        "a second one",
                    );
                }
                let Some(account) = self.merchants.get(merchant).map(|(account, _, _)| *account)
                else {
                    return report.find(
                        Check::Ledger,
                        format!("log leaf {index}"),
                        format!("merchant {merchant} registered before its payments"),
                        "no registration",
                    );
                };
                if !price.is_zero() {
                    self.transfer(
                        index,
                        TransferKind::PaymentRecorded,
                        OutstandingVendorScrip(*merchant),
                        Customer(account),
                        price.as_i64(),
                        report,
                    );
                }
            }
            BrokerEvent::DoubleSpendRefused { .. } => report.refused_double_spends += 1,
            BrokerEvent::PinRefused { account, .. } => {
                *report.refused_pins.entry(*account).or_default() += 1;
                let failures = self.pin_failures.entry(*account).or_default();
                failures.count = failures.count.saturating_add(1);
            }
            BrokerEvent::AccountLocked {
                account,
                failures,
                until,
                at,
            } => {
                report.account_locks.push((*account, *at, *until));
                let counted = self.pin_failures.entry(*account).or_default();
                if counted.count != *failures {
                    report.find(
                        Check::Ledger,
                        format!("log leaf {index}"),
                        format!(
                            "a lock of account {account} after the {} wrong PINs in a row the log records",
                            counted.count
                        ),
                        format!("a lock after {failures}"),
                    );
                }
                counted.lock = Some(crate::store::AccountLock {
                    at: *at,
                    until: *until,
                });
            }
            BrokerEvent::AccountUnlocked { account, at } => {
                report.account_unlocks.push((*account, *at));
                self.pin_failures.remove(account);
            }
        }
    }

    fn spend(&mut self, index: usize, key: Vec<u8>, report: &mut AuditReport) {
        if !self.spent_broker_scrip.insert(key.clone()) {
            report.find(
                Check::Ledger,
                format!("log leaf {index}"),
                format!("BrokerScrip {} spent once", hex(&key)),
                "spent again",
            );
        }
    }
}

/// Compares two sets, reporting what is missing from and extra in the table.
fn compare_sets<T: Ord + std::fmt::Debug>(
    table: &str,
    expected: &BTreeSet<T>,
    found: &BTreeSet<T>,
    show: impl Fn(&T) -> String,
    report: &mut AuditReport,
) {
    for missing in expected.difference(found) {
        report.find(
            Check::Ledger,
            format!("table {table} row {}", show(missing)),
            "present, as the log records",
            "missing",
        );
    }
    for extra in found.difference(expected) {
        report.find(
            Check::Ledger,
            format!("table {table} row {}", show(extra)),
            "absent: the log records no such thing",
            "present",
        );
    }
}

fn compare_ledger(replay: &Replay, snapshot: &BrokerSnapshot, report: &mut AuditReport) {
    // Balances: accounts at zero may or may not have a row.
    let stored: BTreeMap<&str, i64> = snapshot
        .balances
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    let expected: BTreeMap<String, i128> = replay
        .balances
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    for (account, balance) in &expected {
        let found = i128::from(stored.get(account.as_str()).copied().unwrap_or(0));
        if found != *balance {
            report.find(
                Check::Ledger,
                format!("table balances row {account}"),
                money(*balance),
                money(found),
            );
        }
    }
    for (account, balance) in &stored {
        if !expected.contains_key(*account) && *balance != 0 {
            report.find(
                Check::Ledger,
                format!("table balances row {account}"),
                "0.00 (the log records no movement)",
                money(*balance),
            );
        }
    }
    // Journal: one row per transfer, in order.
    if snapshot.journal.len() != replay.journal.len() {
        report.find(
            Check::Ledger,
            "table journal",
            format!("{} rows", replay.journal.len()),
            format!("{} rows", snapshot.journal.len()),
        );
    }
    for ((kind, from, to, amount), (seq, s_kind, s_from, s_to, s_amount)) in
        replay.journal.iter().zip(&snapshot.journal)
    {
        if (kind.to_string(), from.to_string(), to.to_string(), *amount)
            != (s_kind.clone(), s_from.clone(), s_to.clone(), *s_amount)
        {
            report.find(
                Check::Ledger,
                format!("table journal row seq {seq}"),
                format!("{kind} {from} -> {to} {amount}"),
                format!("{s_kind} {s_from} -> {s_to} {s_amount}"),
            );
        }
    }
    // Accounts: the PIN hash and the bound key must be what the log says.
    let accounts: BTreeSet<(AccountNumber, String, Option<PublicKey>)> = replay
        .accounts
        .iter()
        .map(|(a, (pin, key))| (*a, hex(pin), *key))
        .collect();
    let stored_accounts: BTreeSet<(AccountNumber, String, Option<PublicKey>)> = snapshot
        .accounts
        .iter()
        .map(|(a, pin_hash, key)| (*a, hex(&scrip_proto::crypto::digest(pin_hash)), *key))
        .collect();
    compare_sets(
        "accounts",
        &accounts,
        &stored_accounts,
        |(a, pin, key)| {
            format!(
                "{a} (PIN hash digest {pin}, key {})",
                key.map(|k| k.to_string())
                    .unwrap_or_else(|| "unbound".into())
            )
        },
        report,
    );
    // Wrong PINs in a row and locks: only the log may count, lock or unlock.
    let timestamp = |t: Timestamp| i64::try_from(t.0).unwrap_or(i64::MAX);
    let pin_failures: BTreeSet<(AccountNumber, i64, Option<i64>, Option<i64>)> = replay
        .pin_failures
        .iter()
        .map(|(a, f)| {
            (
                *a,
                i64::from(f.count),
                f.lock.map(|l| timestamp(l.at)),
                f.lock.and_then(|l| l.until).map(timestamp),
            )
        })
        .collect();
    compare_sets(
        "pin_failures",
        &pin_failures,
        &snapshot.pin_failures.iter().copied().collect(),
        |(a, count, at, until)| {
            let lock = match (at, until) {
                (None, _) => "not locked".to_owned(),
                (Some(at), None) => format!("locked at {at} until unlocked"),
                (Some(at), Some(until)) => format!("locked at {at} until {until}"),
            };
            format!("{a} ({count} wrong PINs in a row, {lock})")
        },
        report,
    );
    // Merchants: the credited account, the name customers find it by, and the licence.
    let merchants: BTreeSet<(MerchantId, AccountNumber, String, String)> = replay
        .merchants
        .iter()
        .map(|(m, (a, name, licence))| (*m, *a, name.clone(), hex(licence)))
        .collect();
    let mut stored_merchants = BTreeSet::new();
    for (merchant, account, name, licence) in &snapshot.merchants {
        match decode::<scrip_proto::msg::Licence>(licence) {
            Ok(licence) => {
                stored_merchants.insert((
                    *merchant,
                    *account,
                    name.clone(),
                    hex(&scrip_proto::crypto::digest(&licence)),
                ));
            }
            Err(error) => report.find(
                Check::Ledger,
                format!("table merchants row {merchant}"),
                "a licence",
                format!("bytes that do not decode ({error})"),
            ),
        }
    }
    compare_sets(
        "merchants",
        &merchants,
        &stored_merchants,
        |(m, a, name, licence)| format!("{m} ({name:?}, account {a}, licence digest {licence})"),
        report,
    );
    compare_sets(
        "spent_broker_scrip",
        &replay.spent_broker_scrip,
        &snapshot.spent_broker_scrip.iter().cloned().collect(),
        |k| hex(k),
        report,
    );
    let intents: BTreeSet<(RequestId, RequestId, Vec<u8>)> = replay
        .intents
        .iter()
        .map(|(r, (b, s, _))| (*r, *b, s.clone()))
        .collect();
    compare_sets(
        "intents",
        &intents,
        &snapshot.intents.iter().cloned().collect(),
        |(r, _, _)| r.to_string(),
        report,
    );
    let payments: BTreeSet<(MerchantId, Vec<u8>)> = replay.payments.keys().cloned().collect();
    compare_sets(
        "payments",
        &payments,
        &snapshot
            .payments
            .iter()
            .map(|(m, s, _)| (*m, s.clone()))
            .collect(),
        |(m, s)| format!("{m}/{}", hex(s)),
        report,
    );
    // The stored record must say what the log says: the price credited.
    for (merchant, scrip, bytes) in &snapshot.payments {
        let Some((price, _, _)) = replay.payments.get(&(*merchant, scrip.clone())) else {
            continue;
        };
        let location = format!("table payments row {merchant}/{}", hex(scrip));
        match decode::<PaymentRecord>(bytes) {
            Ok(record)
                if record.buy.body.price.as_i64() == *price
                    && record.buy.body.scrip.id().to_key().as_slice() == scrip.as_slice() => {}
            Ok(record) => report.find(
                Check::Ledger,
                location,
                format!("a record of price {}", money(*price)),
                format!(
                    "price {} for scrip {}",
                    record.buy.body.price,
                    record.buy.body.scrip.id()
                ),
            ),
            Err(error) => report.find(
                Check::Ledger,
                location,
                "a payment record",
                format!("bytes that do not decode ({error})"),
            ),
        }
    }
}

fn check_matching(replay: &Replay, now: Timestamp, report: &mut AuditReport) {
    // Listed, not failed: a customer may announce a purchase the merchant
    // then refuses (its price changed, say), and payments are credited
    // without waiting for an intent, so unmatched entries are evidence to
    // read, not proof of tampering (which the ledger check catches).
    let paid: BTreeSet<(RequestId, Vec<u8>)> = replay
        .payments
        .iter()
        .map(|((_, scrip), (_, _, buy))| (*buy, scrip.clone()))
        .collect();
    let announced: BTreeSet<(RequestId, Vec<u8>)> = replay
        .intents
        .values()
        .map(|(buy, scrip, _)| (*buy, scrip.clone()))
        .collect();
    for ((merchant, scrip), (_, _, buy)) in &replay.payments {
        if !announced.contains(&(*buy, scrip.clone())) {
            report.unmatched_payments.push(format!(
                "payment {merchant}/{} (buy {buy}) has no customer intent",
                hex(scrip)
            ));
        }
    }
    for (request, (buy, scrip, at)) in &replay.intents {
        if paid.contains(&(*buy, scrip.clone())) {
            continue;
        }
        if now.0.saturating_sub(at.0) > INTENT_GRACE {
            report.unmatched_intents.push(format!(
                "intent {request} (buy {buy}) has had no payment record since {}",
                at.0
            ));
        } else {
            report.pending_intents += 1;
        }
    }
}

/// The locks the log leaves in force at `now` (misuse: listed, not failed).
fn list_locked_accounts(replay: &Replay, now: Timestamp, report: &mut AuditReport) {
    for (account, failures) in &replay.pin_failures {
        if let Some(lock) = failures.lock.filter(|lock| lock.in_force(now)) {
            report.locked_accounts.insert(*account, lock.until);
        }
    }
}

fn check_conservation(replay: &Replay, snapshot: &BrokerSnapshot, report: &mut AuditReport) {
    let sum = |balances: &mut dyn Iterator<Item = (LedgerAccount, i128)>| -> (i128, i128) {
        let (mut outside, mut inside) = (0i128, 0i128);
        for (account, balance) in balances {
            match account {
                LedgerAccount::MoneyIn | LedgerAccount::MoneyOut => outside -= balance,
                _ => inside += balance,
            }
        }
        (outside, inside)
    };
    let (outside, inside) = sum(&mut replay.balances.iter().map(|(a, b)| (*a, *b)));
    if outside != inside {
        report.find(
            Check::Conservation,
            "the log",
            format!("deposits - withdrawals = {}", money(outside)),
            format!("accounts + outstanding scrip = {}", money(inside)),
        );
    }
    let mut stored = Vec::new();
    for (key, balance) in &snapshot.balances {
        match key.parse::<LedgerAccount>() {
            Ok(account) => stored.push((account, *balance)),
            Err(_) => report.find(
                Check::Conservation,
                format!("table balances row {key}"),
                "a ledger account",
                "an unknown key",
            ),
        }
    }
    let (outside, inside) = sum(&mut stored.into_iter().map(|(a, b)| (a, i128::from(b))));
    if outside != inside {
        report.find(
            Check::Conservation,
            "table balances",
            format!("deposits - withdrawals = {}", money(outside)),
            format!("accounts + outstanding scrip = {}", money(inside)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6962 roots for the first n of these leaves, from the Certificate
    /// Transparency test data (certificate-transparency-go, merkle tests).
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn tree_hashes_match_rfc_6962_known_answers() {
        let mut tree = Recomputed(Vec::new());
        assert_eq!(
            hex(&tlog_tiles::tree_hash(0, &tree).unwrap().0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for (n, leaf) in LEAVES.iter().enumerate() {
            let hashes = tlog_tiles::stored_hashes(n as u64, &unhex(leaf), &tree).unwrap();
            tree.0.extend(hashes);
            assert_eq!(
                hex(&tlog_tiles::tree_hash(n as u64 + 1, &tree).unwrap().0),
                ROOTS[n],
                "root of {} leaves",
                n + 1
            );
        }
    }
}
