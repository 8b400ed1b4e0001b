//! The broker's node: answers every broker protocol and is the rendezvous point.

use std::sync::Arc;

use libp2p::Multiaddr;
use scrip_core::{Broker, Prepared};
use scrip_proto::msg::{
    AuditRequest, AuditResponse, BrokerAnswer, BrokerRequest, BrokerResponse, MerchantEntry,
};
use scrip_proto::{decode, encode, Refusal};
use scrip_store::{BrokerDatabase, BrokerDb};

use crate::group::Grouped;
use crate::node::{Handler, Inbound, Node, NodeConfig};
use crate::{keypair, now, protocol, NetError, NetOptions};

/// The broker and its store, shared by the request handlers.
pub struct BrokerService {
    broker: Broker,
    store: Grouped<BrokerDb, Prepared, BrokerAnswer>,
}

impl BrokerService {
    pub fn new(broker: Broker, store: BrokerDb) -> Self {
        BrokerService {
            broker,
            store: Grouped::new(store),
        }
    }

    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Answers one inbound request. Steps are answered in groups, one durable
    /// commit per group (see [`Grouped`]); each request's public-key work is
    /// done here, in its own thread, before it queues, so that it overlaps
    /// the commit of the group before ([`Broker::prepare`]).
    pub fn handle(&self, inbound: Inbound) -> Vec<u8> {
        if inbound.protocol == protocol::INFO {
            return encode(&self.broker.info());
        }
        if inbound.protocol == protocol::MERCHANTS {
            let directory = self.broker.merchants(&mut *self.store.store()).map(|list| {
                list.into_iter()
                    .map(|(merchant, name)| MerchantEntry { merchant, name })
                    .collect::<Vec<_>>()
            });
            return encode(&directory);
        }
        if inbound.protocol == protocol::AUDIT {
            let answer = match decode::<AuditRequest>(&inbound.request) {
                Ok(request) => self.broker.handle_audit(&mut *self.store.store(), &request),
                Err(error) => AuditResponse::Refused(error.into()),
            };
            return encode(&answer);
        }
        let refused = |refusal| BrokerAnswer {
            response: BrokerResponse::Refused(refusal),
            receipts: Vec::new(),
        };
        let answer = match decode::<BrokerRequest>(&inbound.request) {
            Ok(request) if protocol::for_broker_request(&request) == inbound.protocol => {
                let prepared = self.broker.prepare(now(), &mut rand::rngs::OsRng, request);

                self.store.submit(
                    prepared,
                    |store, group| {
                        self.broker
                            .answer_prepared(store, now(), &mut rand::rngs::OsRng, group)
                    },
                    || refused(Refusal::Unavailable),
                )
            }
            Ok(request) => refused(Refusal::invalid_request(format!(
                "a {} request does not belong on {}",
                protocol::for_broker_request(&request),
                inbound.protocol
            ))),
            Err(error) => refused(error.into()),
        };
        encode(&answer)
    }
}

/// A running broker node.
pub struct BrokerNode {
    pub node: Node,
    pub task: tokio::task::JoinHandle<()>,
    pub service: Arc<BrokerService>,
}

impl BrokerNode {
    /// Opens the broker's `database` and serves the broker on `listen`.
    /// Several nodes of one broker may serve one PostgreSQL database at once.
    pub async fn start(
        broker: Broker,
        database: &BrokerDatabase,
        listen: Vec<Multiaddr>,
        options: NetOptions,
    ) -> Result<BrokerNode, NetError> {
        crate::fault::arm_from_env()?;
        let store = database
            .open()
            .map_err(|e| NetError::Setup(e.to_string()))?;
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
