//! The broker's node: answers every broker protocol and is the rendezvous point.

use std::path::Path;
use std::sync::{Arc, Mutex};

use libp2p::Multiaddr;
use scrip_core::Broker;
use scrip_proto::msg::{
    AuditRequest, AuditResponse, BrokerAnswer, BrokerRequest, BrokerResponse, LogReceipt,
    MerchantEntry, RecordOutcome,
};
use scrip_proto::{decode, encode, Refusal};
use scrip_store_sqlite::SqliteBrokerStore;

use crate::node::{Handler, Inbound, Node, NodeConfig};
use crate::{keypair, now, protocol, NetError, NetOptions};

/// The broker and its store, shared by the request handlers.
pub struct BrokerService {
    broker: Broker,
    store: Mutex<SqliteBrokerStore>,
}

impl BrokerService {
    pub fn new(broker: Broker, store: SqliteBrokerStore) -> Self {
        BrokerService {
            broker,
            store: Mutex::new(store),
        }
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Answers one inbound request. Every step runs in its own store transaction.
    pub fn handle(&self, inbound: Inbound) -> Vec<u8> {
        let mut store = match self.store.lock() {
            Ok(store) => store,
            // A handler panicked mid-step; its transaction rolled back, the store is sound.
            Err(poisoned) => poisoned.into_inner(),
        };
        if inbound.protocol == protocol::INFO {
            return encode(&self.broker.info());
        }
        if inbound.protocol == protocol::MERCHANTS {
            let directory = self.broker.merchants(&mut *store).map(|list| {
                list.into_iter()
                    .map(|(merchant, name)| MerchantEntry { merchant, name })
                    .collect::<Vec<_>>()
            });
            return encode(&directory);
        }
        if inbound.protocol == protocol::AUDIT {
            let answer = match decode::<AuditRequest>(&inbound.request) {
                Ok(request) => self.broker.handle_audit(&mut *store, &request),
                Err(error) => AuditResponse::Refused(error.into()),
            };
            return encode(&answer);
        }
        let (response, request) = match decode::<BrokerRequest>(&inbound.request) {
            Ok(request) if protocol::for_broker_request(&request) == inbound.protocol => (
                self.broker
                    .handle(&mut *store, now(), &mut rand::rngs::OsRng, &request),
                Some(request),
            ),
            Ok(request) => (
                BrokerResponse::Refused(Refusal::invalid_request(format!(
                    "a {} request does not belong on {}",
                    protocol::for_broker_request(&request),
                    inbound.protocol
                ))),
                None,
            ),
            Err(error) => (BrokerResponse::Refused(error.into()), None),
        };
        let receipts = self
            .receipts(&mut store, request.as_ref(), &response)
            .unwrap_or_else(|refusal| {
                tracing::warn!(%refusal, "cannot make log receipts");
                Vec::new()
            });
        encode(&BrokerAnswer { response, receipts })
    }

    /// The receipts for an answered request: its logged step (a retry gets
    /// the same leaf under a newer checkpoint), or each credited payment record.
    fn receipts(
        &self,
        store: &mut SqliteBrokerStore,
        request: Option<&BrokerRequest>,
        response: &BrokerResponse,
    ) -> Result<Vec<LogReceipt>, Refusal> {
        let Some(request) = request else {
            return Ok(Vec::new());
        };
        if let (BrokerRequest::PaymentRecords(batch), BrokerResponse::PaymentRecordsAck(ack)) =
            (request, response)
        {
            let mut receipts = Vec::new();
            for (record, (_, outcome)) in batch.body.records.iter().zip(&ack.body.outcomes) {
                if let RecordOutcome::Credited { leaf, .. } = outcome {
                    receipts.extend(self.broker.receipt_for_leaf(
                        store,
                        record.buy.body.request_id,
                        *leaf,
                    )?);
                }
            }
            return Ok(receipts);
        }
        match (response, request.request_id()) {
            (BrokerResponse::Refused(_), _) | (_, None) => Ok(Vec::new()),
            (_, Some(id)) => Ok(self.broker.receipt(store, id)?.into_iter().collect()),
        }
    }
}

/// A running broker node.
pub struct BrokerNode {
    pub node: Node,
    pub task: tokio::task::JoinHandle<()>,
    pub service: Arc<BrokerService>,
}

impl BrokerNode {
    /// Opens the store at `database` and serves the broker on `listen`.
    pub async fn start(
        broker: Broker,
        database: &Path,
        listen: Vec<Multiaddr>,
        options: NetOptions,
    ) -> Result<BrokerNode, NetError> {
        let store =
            SqliteBrokerStore::open(database).map_err(|e| NetError::Setup(e.to_string()))?;
        let keypair = keypair(broker.signing_key());
        let service = Arc::new(BrokerService::new(broker, store));
        let mut config = NodeConfig::new(keypair);
        config.listen = listen;
        config.serve = protocol::BROKER_PROTOCOLS.to_vec();
        config.rendezvous_server = true;
        config.mdns = options.mdns;
        let handler_service = service.clone();
        let handler: Handler = Arc::new(move |inbound| handler_service.handle(inbound));
        let (node, task) = Node::start(config, Some(handler)).await?;
        Ok(BrokerNode {
            node,
            task,
            service,
        })
    }
}
