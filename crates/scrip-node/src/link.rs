//! A peer's link to the broker: requests with retries, the broker's info and directory.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId, StreamProtocol};
use scrip_proto::msg::{
    AuditRequest, AuditResponse, BrokerAnswer, BrokerInfo, BrokerRequest, BrokerResponse,
    LogReceipt, MerchantDirectory, MerchantEntry,
};
use scrip_proto::{decode, encode, Refusal};

use crate::node::{Discovered, Node};
use crate::{peer_of, protocol, public_key, NetError};

/// How often a request is tried before its outcome is reported unknown.
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Sends `request` until an answer arrives, with exponential backoff between
/// attempts. Safe because every retry carries the same bytes, so the same
/// request id: the peer answers a retry from its stored response.
pub async fn call_with_retry(
    node: &Node,
    peer: PeerId,
    addresses: &[Multiaddr],
    protocol: StreamProtocol,
    request: &[u8],
) -> Result<Vec<u8>, NetError> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match node
            .request(peer, addresses.to_vec(), protocol.clone(), request.to_vec())
            .await
        {
            Ok(response) => return Ok(response),
            Err(error) if attempt < ATTEMPTS => {
                tracing::debug!(%peer, %error, attempt, "request failed; retrying with the same request id");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

/// What checking log receipts against the broker's current log found.
#[derive(Debug, Clone)]
pub struct LogVerification {
    pub log_size: u64,
    pub receipts: usize,
    /// Empty when every receipt is included and the log only grew.
    pub problems: Vec<String>,
}

/// A verified connection to the broker.
#[derive(Clone)]
pub struct BrokerLink {
    node: Node,
    broker: PeerId,
    address: Multiaddr,
    info: BrokerInfo,
}

impl BrokerLink {
    /// Fetches the broker's info and checks that the broker signs with the key its peer id names.
    pub async fn connect(node: Node, address: Multiaddr) -> Result<BrokerLink, NetError> {
        let broker = peer_of(&address)?;
        let bytes = call_with_retry(
            &node,
            broker,
            std::slice::from_ref(&address),
            protocol::INFO,
            &[],
        )
        .await?;
        let info: BrokerInfo = decode(&bytes).map_err(|e| NetError::BadAnswer(e.to_string()))?;
        if public_key(&broker) != Some(info.broker) {
            return Err(NetError::BadAnswer(format!(
                "the broker at {address} presents key {} that is not its peer id",
                info.broker
            )));
        }
        Ok(BrokerLink {
            node,
            broker,
            address,
            info,
        })
    }

    pub fn info(&self) -> &BrokerInfo {
        &self.info
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Sends canonical request bytes and decodes the answer. A
    /// [`Refusal::Unavailable`] answer is retried like a lost connection.
    pub async fn call_bytes(&self, request: &[u8]) -> Result<BrokerAnswer, NetError> {
        let decoded: BrokerRequest = decode(request)
            .map_err(|e| NetError::BadAnswer(format!("not a broker request: {e}")))?;
        let protocol = protocol::for_broker_request(&decoded);
        let mut attempt = 1;
        loop {
            let bytes = call_with_retry(
                &self.node,
                self.broker,
                std::slice::from_ref(&self.address),
                protocol.clone(),
                request,
            )
            .await?;
            let answer: BrokerAnswer =
                decode(&bytes).map_err(|e| NetError::BadAnswer(e.to_string()))?;
            if answer.response != BrokerResponse::Refused(Refusal::Unavailable)
                || attempt == ATTEMPTS
            {
                return Ok(answer);
            }
            tokio::time::sleep(FIRST_BACKOFF * attempt).await;
            attempt += 1;
        }
    }

    pub async fn call(&self, request: &BrokerRequest) -> Result<BrokerAnswer, NetError> {
        self.call_bytes(&encode(request)).await
    }

    /// Asks the broker about its log (`/scrip/audit/1`).
    pub async fn audit(&self, request: &AuditRequest) -> Result<AuditResponse, NetError> {
        let bytes = call_with_retry(
            &self.node,
            self.broker,
            std::slice::from_ref(&self.address),
            protocol::AUDIT,
            &encode(request),
        )
        .await?;
        decode(&bytes).map_err(|e| NetError::BadAnswer(e.to_string()))
    }

    /// The registered merchants.
    pub async fn directory(&self) -> Result<Result<Vec<MerchantEntry>, Refusal>, NetError> {
        let bytes = call_with_retry(
            &self.node,
            self.broker,
            std::slice::from_ref(&self.address),
            protocol::MERCHANTS,
            &[],
        )
        .await?;
        decode::<MerchantDirectory>(&bytes).map_err(|e| NetError::BadAnswer(e.to_string()))
    }

    /// Registers this node at the broker's rendezvous point as a merchant.
    pub async fn register_as_merchant(&self) -> Result<(), NetError> {
        self.node
            .register(
                self.broker,
                self.address.clone(),
                protocol::MERCHANT_NAMESPACE,
            )
            .await
    }

    /// The merchants registered at the rendezvous point, with their addresses.
    pub async fn discover_merchants(&self) -> Result<Vec<Discovered>, NetError> {
        self.node
            .discover(
                self.broker,
                self.address.clone(),
                protocol::MERCHANT_NAMESPACE,
            )
            .await
    }

    /// Checks receipts against the broker's log as it is now: each
    /// receipt's checkpoint is the broker's, each leaf is still included, and
    /// the log only grew since each receipt was signed.
    pub async fn verify_receipts(
        &self,
        receipts: &[LogReceipt],
    ) -> Result<LogVerification, NetError> {
        let broker = self.info.broker;
        let current = match self.audit(&AuditRequest::Checkpoint).await? {
            AuditResponse::Checkpoint(note) => scrip_core::log::verify_checkpoint(&broker, &note)
                .map_err(|e| {
                NetError::BadAnswer(format!("the broker's latest checkpoint: {e}"))
            })?,
            AuditResponse::Refused(refusal) => return Err(NetError::Request(refusal.to_string())),
            AuditResponse::Proof(_) => {
                return Err(NetError::BadAnswer(
                    "a proof where a checkpoint was asked for".into(),
                ))
            }
        };
        let mut verification = LogVerification {
            log_size: current.size,
            receipts: receipts.len(),
            problems: Vec::new(),
        };
        for receipt in receipts {
            let name = format!(
                "receipt for request {} (leaf {})",
                receipt.request_id, receipt.leaf_index
            );
            let then = match scrip_core::log::verify_checkpoint(&broker, &receipt.checkpoint) {
                Ok(checkpoint) => checkpoint,
                Err(error) => {
                    verification.problems.push(format!(
                        "{name}: its checkpoint is not the broker's ({error})"
                    ));
                    continue;
                }
            };
            if receipt.leaf_index >= then.size || then.size > current.size {
                verification.problems.push(format!("{name}: signed for a log of {} leaves, but the log now has {}: it was rolled back", then.size, current.size));
                continue;
            }
            let included = self
                .proof(AuditRequest::Inclusion {
                    leaf_index: receipt.leaf_index,
                    tree_size: current.size,
                })
                .await?;
            if !scrip_core::log::check_inclusion(
                &included,
                current.size,
                current.root,
                receipt.leaf_index,
                receipt.leaf_hash,
            ) {
                verification
                    .problems
                    .push(format!("{name}: not included in the current log"));
            }
            let consistent = self
                .proof(AuditRequest::Consistency {
                    old_size: then.size,
                    new_size: current.size,
                })
                .await?;
            if !scrip_core::log::check_consistency(
                &consistent,
                current.size,
                current.root,
                then.size,
                then.root,
            ) {
                verification.problems.push(format!("{name}: the log of {} leaves it was signed with is not a prefix of the current log", then.size));
            }
        }
        Ok(verification)
    }

    async fn proof(&self, request: AuditRequest) -> Result<Vec<[u8; 32]>, NetError> {
        match self.audit(&request).await? {
            AuditResponse::Proof(proof) => Ok(proof),
            AuditResponse::Refused(refusal) => Err(NetError::Request(refusal.to_string())),
            AuditResponse::Checkpoint(_) => Err(NetError::BadAnswer(
                "a checkpoint where a proof was asked for".into(),
            )),
        }
    }
}
