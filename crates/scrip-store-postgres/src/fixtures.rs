//! Test values built from fixed bytes (the SQLite store's, copied).

use scrip_core::store::{AccountRecord, IntentRow, MerchantRecord, PaymentRow, StoredResponse};
use scrip_proto::crypto::{CustomerMaster, CustomerSecret, Mac, Proved, StampingSecret};
use scrip_proto::msg::{Buy, Intent, IntentReceipt, Licence, PaymentRecord, Purchase};
use scrip_proto::{
    AccountNumber, Amount, CustId, MerchantId, PublicKey, RequestId, Scrip, ScripBody, ScripId,
    ScripKind, Secret32, Timestamp,
};

pub(crate) const NOW: Timestamp = Timestamp(1_700_000_000);

pub(crate) fn amount(minor: u64) -> Amount {
    Amount::from_minor(minor).expect("test amount in range")
}

pub(crate) fn scrip_id(n: u64) -> ScripId {
    let mut serial = [0u8; 16];
    serial[..8].copy_from_slice(&n.to_be_bytes());
    ScripId { series: 7, serial }
}

pub(crate) fn request_id(n: u64) -> RequestId {
    let mut bytes = [0u8; 16];
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    RequestId(bytes)
}

pub(crate) fn merchant_id(byte: u8) -> MerchantId {
    PublicKey([byte; 32])
}

pub(crate) fn scrip(kind: ScripKind, id: ScripId) -> Scrip {
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

pub(crate) fn customer_secret() -> CustomerSecret {
    CustomerSecret(Secret32::from_bytes([5; 32]))
}

pub(crate) fn payment_record(id: ScripId) -> PaymentRecord {
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

pub(crate) fn payment_row(merchant: MerchantId, id: ScripId) -> PaymentRow {
    PaymentRow {
        merchant,
        record: payment_record(id),
        recorded_at: NOW,
    }
}

pub(crate) fn account_record(number: u64) -> AccountRecord {
    AccountRecord {
        number: AccountNumber(number),
        name: format!("customer {number}"),
        pin_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        account_key: None,
        opened_at: NOW,
    }
}

pub(crate) fn merchant_record(merchant: MerchantId, name: &str, account: u64) -> MerchantRecord {
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

pub(crate) fn intent_receipt(request: RequestId, id: ScripId) -> IntentReceipt {
    IntentReceipt {
        request_id: request,
        buy_request: request_id(99),
        scrip: id,
        merchant: merchant_id(1),
        price: amount(2_000),
        recorded_at: NOW,
    }
}

pub(crate) fn intent_row(request: RequestId, id: ScripId) -> IntentRow {
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

pub(crate) fn response(byte: u8) -> StoredResponse {
    StoredResponse {
        request_digest: Mac([byte; 32]).0,
        response: vec![byte; 40],
        leaf: Some(u64::from(byte)),
    }
}
