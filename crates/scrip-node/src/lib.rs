//! scrip-node: scrip on libp2p, the broker and peer nodes that carry the core's canonical messages.
//!
//! This crate is the network edge. It owns sockets, the tokio runtime, the
//! clock and the SQLite stores, and calls `scrip-core` on blocking threads.
//! It adds no protocol logic of its own: every message it carries is a
//! `scrip-proto` canonical message, framed by [`codec::FrameCodec`] on one of
//! the versioned protocols of [`protocol`].
//!
//! - [`node`]: one libp2p swarm and its driver, used by every role.
//! - [`broker`]: the broker's service and the rendezvous point.
//! - [`merchant`]: a merchant's service, its registration, and the payment-record forwarder.
//! - [`customer`]: the customer's side: a wallet talking to the broker and to merchants,
//!   always from an ephemeral peer identity.
//! - [`fault`]: a fault-injection hook for crash tests, inert unless its variable is set.

pub mod broker;
pub mod codec;
pub mod customer;
pub mod fault;
pub mod group;
pub mod link;
pub mod merchant;
pub mod node;
pub mod protocol;

use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::{identity, multiaddr::Protocol, Multiaddr, PeerId};
use scrip_proto::crypto::SigningKey;
use scrip_proto::{PublicKey, Timestamp};

/// A network failure. The outcome of a request that failed this way is
/// unknown: retry it with the same bytes.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot set up the network: {0}")]
    Setup(String),
    #[error("cannot listen: {0}")]
    Listen(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("rendezvous failed: {0}")]
    Rendezvous(String),
    #[error("no answer within {0} seconds")]
    Timeout(u64),
    #[error(
        "the address {0} does not end in /p2p/<peer id>; use the full address the broker printed"
    )]
    NoPeerId(Multiaddr),
    #[error("the peer answered with bytes that are not a scrip message: {0}")]
    BadAnswer(String),
    #[error("the node has stopped")]
    Stopped,
}

/// Network choices a user makes, the same for every role.
#[derive(Debug, Clone, Copy, Default)]
pub struct NetOptions {
    /// Also find peers on the local network with mDNS. Off by default; needs
    /// the `mdns` cargo feature.
    pub mdns: bool,
}

/// The current time, for the core.
pub fn now() -> Timestamp {
    Timestamp(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// The libp2p identity of a scrip key: the same Ed25519 key, so a merchant's
/// peer id and its merchant id name one key.
pub fn keypair(signing: &SigningKey) -> identity::Keypair {
    let mut secret = *signing.secret().expose();
    identity::Keypair::ed25519_from_bytes(&mut secret).expect("32 bytes are an Ed25519 secret")
}

/// The peer id of a scrip public key.
pub fn peer_id(key: &PublicKey) -> Option<PeerId> {
    let key = identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()).ok()?;
    Some(identity::PublicKey::from(key).to_peer_id())
}

/// The scrip public key behind a peer id, if it is an Ed25519 identity.
pub fn public_key(peer: &PeerId) -> Option<PublicKey> {
    // Ed25519 peer ids inline the key: the multihash digest is the protobuf-encoded public key.
    let key = identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    Some(PublicKey(key.try_into_ed25519().ok()?.to_bytes()))
}

/// The peer id at the end of a full address.
pub fn peer_of(address: &Multiaddr) -> Result<PeerId, NetError> {
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Ok(peer),
        _ => Err(NetError::NoPeerId(address.clone())),
    }
}
