//! Checking scrip: the checks the broker and the merchant share.
//!
//! A scrip is accepted only when every check passes, in this order: kind,
//! issuer, currency, series, stamp, expiry, ownership proof. A tampered value
//! or expiry breaks the stamp, so it is caught before the expiry is believed.

use scrip_proto::crypto::{CustomerMaster, Labelled, Proved, StampingSecret};
use scrip_proto::{Currency, PublicKey, Refusal, Scrip, ScripKind, Timestamp};

/// What the checking party expects of a scrip.
pub struct Expected<'a> {
    pub kind: ScripKind,
    pub issuer: &'a PublicKey,
    pub currency: Currency,
}

/// The secrets of the issuer, as far as the checking party holds them.
pub trait IssuerSecrets {
    /// The stamping secret of `series`, if this party can check that series.
    fn stamping_secret(&self, series: u32) -> Option<&StampingSecret>;
    fn customer_master(&self) -> &CustomerMaster;
}

/// Scrip whose kind, issuer, currency and stamp were checked: by
/// [`verify_spend`] (which also checks expiry and the ownership proof) or
/// [`verify_stamp`]. Only these make one, so code that takes a
/// `VerifiedScrip` cannot skip the stamp.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedScrip<'a> {
    scrip: &'a Scrip,
}

impl<'a> VerifiedScrip<'a> {
    pub fn scrip(&self) -> &'a Scrip {
        self.scrip
    }
}

/// Checks that `scrip` is genuine, current and spent by its owner in `request`.
///
/// # Errors
/// The refusal that names the first failed check; nothing is changed.
pub fn verify_spend<'a, T: Labelled>(
    request: &Proved<T>,
    scrip: &'a Scrip,
    expected: &Expected<'_>,
    secrets: &impl IssuerSecrets,
    now: Timestamp,
) -> Result<VerifiedScrip<'a>, Refusal> {
    let verified = verify_stamp(scrip, expected, secrets)?;
    let body = &scrip.body;
    if now >= body.expiry {
        return Err(Refusal::Expired {
            scrip: body.id,
            expiry: body.expiry,
            now,
        });
    }
    let customer_secret = secrets.customer_master().customer_secret(&body.cust_id);
    if !request.proof_matches(&customer_secret) {
        return Err(Refusal::NotOwner { scrip: body.id });
    }
    Ok(verified)
}

/// Checks kind, issuer, currency and stamp, but neither expiry nor ownership:
/// for records of payments that were validated when they happened.
pub fn verify_stamp<'a>(
    scrip: &'a Scrip,
    expected: &Expected<'_>,
    secrets: &impl IssuerSecrets,
) -> Result<VerifiedScrip<'a>, Refusal> {
    let body = &scrip.body;
    if body.kind != expected.kind {
        return Err(Refusal::WrongKind {
            scrip: body.id,
            expected: expected.kind,
            found: body.kind,
        });
    }
    if body.issuer != *expected.issuer {
        return Err(Refusal::WrongIssuer {
            scrip: body.id,
            expected: *expected.issuer,
            found: body.issuer,
        });
    }
    if body.currency != expected.currency {
        return Err(Refusal::WrongCurrency {
            expected: expected.currency,
            found: body.currency,
        });
    }
    let stamping = secrets
        .stamping_secret(body.id.series)
        .ok_or(Refusal::UnknownSeries { scrip: body.id })?;
    if !scrip.stamp_matches(stamping) {
        return Err(Refusal::ForgedStamp { scrip: body.id });
    }
    Ok(VerifiedScrip { scrip })
}
