//! The versioned request-response protocols, one per step, and which message each carries.

use libp2p::StreamProtocol;
use scrip_proto::msg::{BrokerRequest, MerchantRequest};

/// The broker's [`scrip_proto::msg::BrokerInfo`]; request is empty.
pub const INFO: StreamProtocol = StreamProtocol::new("/scrip/info/1");
/// The broker's directory of registered merchants; request is empty.
pub const MERCHANTS: StreamProtocol = StreamProtocol::new("/scrip/merchants/1");
pub const BROKER_SCRIP: StreamProtocol = StreamProtocol::new("/scrip/broker-scrip/1");
pub const VENDOR_SCRIP: StreamProtocol = StreamProtocol::new("/scrip/vendor-scrip/1");
pub const RENEW: StreamProtocol = StreamProtocol::new("/scrip/renew/1");
pub const REGISTER: StreamProtocol = StreamProtocol::new("/scrip/register/1");
pub const INTENT: StreamProtocol = StreamProtocol::new("/scrip/intent/1");
pub const PAYMENT_RECORD: StreamProtocol = StreamProtocol::new("/scrip/payment-record/1");
/// Questions about the broker's log: [`scrip_proto::msg::AuditRequest`] → [`scrip_proto::msg::AuditResponse`].
pub const AUDIT: StreamProtocol = StreamProtocol::new("/scrip/audit/1");
pub const BUY: StreamProtocol = StreamProtocol::new("/scrip/buy/2");
pub const CATALOG: StreamProtocol = StreamProtocol::new("/scrip/catalog/1");

/// What the broker serves.
pub const BROKER_PROTOCOLS: [StreamProtocol; 9] = [
    INFO,
    MERCHANTS,
    BROKER_SCRIP,
    VENDOR_SCRIP,
    RENEW,
    REGISTER,
    INTENT,
    PAYMENT_RECORD,
    AUDIT,
];
/// What a merchant serves.
pub const MERCHANT_PROTOCOLS: [StreamProtocol; 2] = [BUY, CATALOG];

/// The rendezvous namespace merchants register under at the broker.
pub const MERCHANT_NAMESPACE: &str = "scrip-merchants";

/// The protocol a broker request travels on.
pub fn for_broker_request(request: &BrokerRequest) -> StreamProtocol {
    match request {
        BrokerRequest::ObtainBrokerScrip(_) => BROKER_SCRIP,
        BrokerRequest::ObtainVendorScrip(_) => VENDOR_SCRIP,
        BrokerRequest::RenewBrokerScrip(_) => RENEW,
        BrokerRequest::RegisterMerchant(_) => REGISTER,
        BrokerRequest::Intent(_) => INTENT,
        BrokerRequest::PaymentRecords(_) => PAYMENT_RECORD,
    }
}

/// The protocol a merchant request travels on.
pub fn for_merchant_request(request: &MerchantRequest) -> StreamProtocol {
    match request {
        MerchantRequest::Buy(_) => BUY,
        MerchantRequest::Catalog => CATALOG,
    }
}
