//! Test values built from fixed bytes, for the stores' tests and the conformance cases.

use scrip_core::event::BrokerEvent;
use scrip_core::ledger::{LedgerAccount, Transfer, TransferKind};
use scrip_core::store::{
    AccountLock, AccountRecord, BrokerStore, BrokerTx, IntentRow, MerchantRecord, PaymentRow,
    PinFailures, Spend, StoredResponse,
};
use scrip_proto::crypto::{
    CustomerMaster, CustomerSecret, Mac, Proved, Signed, SigningKey, StampingSecret,
};
use scrip_proto::msg::{Buy, Intent, IntentReceipt, Licence, PaymentRecord, Purchase};
use scrip_proto::{
    AccountNumber, Amount, CustId, MerchantId, PublicKey, RequestId, Scrip, ScripBody, ScripId,
    ScripKind, Secret32, Timestamp,
};

pub const NOW: Timestamp = Timestamp(1_700_000_000);

/// Two customers' account numbers.
pub const ALICE: u64 = 100_000_000_001;
pub const BOB: u64 = 100_000_000_002;

pub fn amount(minor: u64) -> Amount {
    Amount::from_minor(minor).expect("test amount in range")
}

pub fn scrip_id(n: u64) -> ScripId {
    let mut serial = [0u8; 16];
    serial[..8].copy_from_slice(&n.to_be_bytes());
    ScripId { series: 7, serial }
}

pub fn request_id(n: u64) -> RequestId {
    let mut bytes = [0u8; 16];
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    RequestId(bytes)
}

pub fn merchant_id(byte: u8) -> MerchantId {
    PublicKey([byte; 32])
}

pub fn scrip(kind: ScripKind, id: ScripId) -> Scrip {
    let body = ScripBody {
        kind,
        issuer: merchant_id(1),
        id,
        value: amount(10_000),
        currency: "EUR".parse().expect("currency"),
        cust_id: CustId([3; 16]),
        expiry: NOW.plus_seconds(3600),
    };
    Scrip::mint(body, &StampingSecret(Secret32::from_bytes([4; 32])))
}

pub fn customer_secret() -> CustomerSecret {
    CustomerSecret(Secret32::from_bytes([5; 32]))
}

pub fn payment_record(id: ScripId) -> PaymentRecord {
    let buy = Buy {
        request_id: request_id(id.serial[7].into()),
        scrip: scrip(ScripKind::Vendor, id),
        purchase: Purchase::Item("tea".into()),
        price: amount(2_000),
    };
    PaymentRecord {
        buy: Proved::prove(buy, &customer_secret()),
        change: None,
        at: NOW,
    }
}

pub fn payment_row(merchant: MerchantId, id: ScripId) -> PaymentRow {
    PaymentRow {
        merchant,
        record: payment_record(id),
        recorded_at: NOW,
    }
}

pub fn account_record(number: u64) -> AccountRecord {
    AccountRecord {
        number: AccountNumber(number),
        name: format!("customer {number}"),
        pin_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        account_key: None,
        opened_at: NOW,
    }
}

pub fn merchant_record(merchant: MerchantId, name: &str, account: u64) -> MerchantRecord {
    MerchantRecord {
        merchant,
        name: name.into(),
        account: AccountNumber(account),
        licence: Licence {
            series: 7,
            stamping_secret: StampingSecret(Secret32::from_bytes([merchant.0[0]; 32])),
            customer_master: CustomerMaster(Secret32::from_bytes([9; 32])),
        },
        registered_at: NOW,
    }
}

pub fn intent_receipt(request: RequestId, id: ScripId) -> IntentReceipt {
    IntentReceipt {
        request_id: request,
        buy_request: request_id(99),
        scrip: id,
        merchant: merchant_id(1),
        price: amount(2_000),
        recorded_at: NOW,
    }
}

pub fn signed_intent_receipt(request: RequestId, id: ScripId) -> Signed<IntentReceipt> {
    Signed::sign(
        intent_receipt(request, id),
        &SigningKey::from_secret(&Secret32::from_bytes([6; 32])),
    )
}

pub fn intent_row(request: RequestId, id: ScripId) -> IntentRow {
    IntentRow {
        intent: Intent {
            request_id: request,
            buy_request: request_id(99),
            scrip: scrip(ScripKind::Vendor, id),
            purchase: Purchase::Item("tea".into()),
            price: amount(2_000),
        },
        receipt: intent_receipt(request, id),
    }
}

pub fn response(byte: u8) -> StoredResponse {
    StoredResponse {
        request_digest: Mac([byte; 32]).0,
        response: vec![byte; 40],
        leaf: Some(u64::from(byte)),
    }
}

// ---- The broker's ledger and log ------------------------------------------

pub fn customer(number: u64) -> LedgerAccount {
    LedgerAccount::Customer(AccountNumber(number))
}

pub fn transfer(
    kind: TransferKind,
    from: LedgerAccount,
    to: LedgerAccount,
    minor: u64,
) -> Transfer {
    Transfer::new(kind, from, to, amount(minor), NOW).expect("a valid transfer")
}

/// Money paid in to the customer's account.
pub fn deposit(number: u64, minor: u64) -> Transfer {
    transfer(
        TransferKind::Deposit,
        LedgerAccount::MoneyIn,
        customer(number),
        minor,
    )
}

pub fn event() -> BrokerEvent {
    BrokerEvent::AccountOpened {
        account: AccountNumber(ALICE),
        pin_hash: [7; 32],
        at: NOW,
    }
}

/// Five wrong PINs and a lock until the operator lifts it.
pub fn alice_locked() -> PinFailures {
    PinFailures {
        count: 5,
        lock: Some(AccountLock {
            at: NOW,
            until: None,
        }),
    }
}

/// Begins a step that spends `scrip_id(n)` and logs it: committed, one
/// spent id and one leaf more.
pub fn begin_a_logged_spend<S: BrokerStore>(store: &mut S, n: u64) -> S::Tx<'_> {
    let mut tx = store.begin().unwrap();
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(n), NOW).unwrap(),
        Spend::Fresh
    );
    tx.append_event(&event()).unwrap();
    tx
}

/// Checks that the ids spent are `scrip_id(n)` of each of `spent`, in
/// order, and the log has a leaf for each and no gap.
pub fn assert_spent_and_logged(store: &mut impl BrokerStore, spent: &[u64]) {
    let snapshot = store.begin().unwrap().snapshot().unwrap();
    let keys: Vec<Vec<u8>> = spent
        .iter()
        .map(|n| scrip_id(*n).to_key().to_vec())
        .collect();
    assert_eq!(snapshot.spent_broker_scrip, keys);
    assert_eq!(snapshot.leaves.len(), spent.len(), "the log has no gap");
}

/// Writes one of everything the broker keeps.
pub fn write_everything(tx: &mut impl BrokerTx) {
    tx.store_response(&request_id(1), &response(1)).unwrap();
    tx.insert_account(&account_record(ALICE)).unwrap();
    tx.bind_account_key(AccountNumber(ALICE), &PublicKey([8; 32]))
        .unwrap();
    tx.post(&deposit(ALICE, 5_000)).unwrap();
    assert_eq!(
        tx.mark_broker_scrip_spent(&scrip_id(1), NOW).unwrap(),
        Spend::Fresh
    );
    tx.put_merchant(&merchant_record(merchant_id(1), "tea shop", ALICE))
        .unwrap();
    tx.insert_intent(&intent_row(request_id(2), scrip_id(2)))
        .unwrap();
    assert_eq!(
        tx.record_payment(&payment_row(merchant_id(1), scrip_id(2)))
            .unwrap(),
        Spend::Fresh
    );
    tx.append_event(&event()).unwrap();
    tx.put_pin_failures(AccountNumber(ALICE), &alice_locked())
        .unwrap();
}

/// `threads` threads, each with a store of its own from `open`, race
/// `rounds` times: all start round `r` at once and call `spend(store, r)`,
/// which says whether that thread won. Returns how many won each round.
pub fn race<S>(
    threads: usize,
    rounds: u64,
    open: impl Fn() -> S + Sync,
    spend: impl Fn(&mut S, u64) -> bool + Sync,
) -> Vec<usize> {
    let barrier = std::sync::Barrier::new(threads);
    let mut winners = vec![0; usize::try_from(rounds).expect("rounds fit in memory")];
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut store = open();
                    (0..rounds)
                        .filter(|&round| {
                            barrier.wait();
                            spend(&mut store, round)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for thread in threads {
            for round in thread.join().expect("a racing thread panicked") {
                winners[round as usize] += 1;
            }
        }
    });
    winners
}
