//! Scrip: Millicent's body plus stamp.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::amount::{Amount, Currency};
use crate::crypto::{Labelled, Mac, StampingSecret};
use crate::ids::{CustId, PublicKey, ScripId, Timestamp};

/// BrokerScrip is issued and spent at the broker; VendorScrip at one merchant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub enum ScripKind {
    Broker,
    Vendor,
}

impl std::fmt::Display for ScripKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ScripKind::Broker => "BrokerScrip",
            ScripKind::Vendor => "VendorScrip",
        })
    }
}

/// What a scrip says: who issued it, what it is worth, whose pseudonym owns it, until when.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ScripBody {
    pub kind: ScripKind,
    /// The broker's key for BrokerScrip, the merchant's for VendorScrip.
    pub issuer: PublicKey,
    pub id: ScripId,
    pub value: Amount,
    pub currency: Currency,
    pub cust_id: CustId,
    pub expiry: Timestamp,
}

impl Labelled for ScripBody {
    const DOMAIN: &'static str = "scrip/v1/scrip-body";
}

/// A scrip body and the issuer's stamp over it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Scrip {
    pub body: ScripBody,
    pub stamp: Mac,
}

impl Scrip {
    /// Stamps `body` with the issuer's secret for the body's series.
    pub fn mint(body: ScripBody, secret: &StampingSecret) -> Scrip {
        let stamp = secret.stamp(&body);
        Scrip { body, stamp }
    }

    /// True if `secret` made this stamp over exactly this body. Any change to
    /// value, expiry, issuer or any other field breaks it.
    pub fn stamp_matches(&self, secret: &StampingSecret) -> bool {
        secret.stamp(&self.body).matches(&self.stamp)
    }

    pub fn id(&self) -> ScripId {
        self.body.id
    }

    pub fn value(&self) -> Amount {
        self.body.value
    }
}
