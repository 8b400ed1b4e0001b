//! The broker's node: answers every broker protocol and is the rendezvous point.

use std::sync::Arc;

use libp2p::Multiaddr;
use scrip_core::{Broker, Prepared};
use scrip_proto::msg::{
    AuditRequest, AuditResponse, BrokerAnswer, BrokerRequest, BrokerResponse, MerchantEntry,
};
use scrip_proto::{decode, encode, Refusal};
use scrip_store::{BrokerDatabase, BrokerPool, PooledBrokerDb};

use crate::group::Grouped;
use crate::node::{Handler, Inbound, Node, NodeConfig};
use crate::{keypair, now, protocol, NetError, NetOptions};

/// The broker and its store, shared by the request handlers.
pub struct BrokerService {
    broker: Broker,
    /// The writer's connection and the readers'.
    pool: BrokerPool,
    /// Where concurrent steps form groups. The thread that answers a group
    /// takes the writer's connection for it and gives it back after, so a
    /// connection that broke is replaced before the next group.
    groups: Grouped<(), Prepared, BrokerAnswer>,
}

impl BrokerService {
    pub fn new(broker: Broker, pool: BrokerPool) -> Self {
        BrokerService {
            broker,
            pool,
            groups: Grouped::new(()),
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
        // Reads run on a reader's connection, beside the group that commits.
        if inbound.protocol == protocol::MERCHANTS {
            let directory = self
                .reader()
                .and_then(|mut store| self.broker.merchants(&mut *store))
                .map(|list| {
                    list.into_iter()
                        .map(|(merchant, name)| MerchantEntry { merchant, name })
                        .collect::<Vec<_>>()
                });
            return encode(&directory);
        }
        if inbound.protocol == protocol::AUDIT {
            let answer = match decode::<AuditRequest>(&inbound.request) {
                Ok(request) => match self.reader() {
                    Ok(mut store) => self.broker.handle_audit(&mut *store, &request),
                    Err(refusal) => AuditResponse::Refused(refusal),
                },
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
                self.groups.submit(
                    prepared,
                    |(), group| match self.pool.writer() {
                        Ok(mut store) => self.broker.answer_prepared(
                            &mut *store,
                            now(),
                            &mut rand::rngs::OsRng,
                            group,
                        ),
                        Err(error) => {
                            let refusal = Refusal::from(error);
                            group.iter().map(|_| refused(refusal.clone())).collect()
                        }
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

    /// A reader's connection; none within the pool's timeout is an
    /// unavailable store, which the client retries.
    fn reader(&self) -> Result<PooledBrokerDb, Refusal> {
        Ok(self.pool.reader()?)
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
        let pool = database
            .pool()
            .map_err(|e| NetError::Setup(e.to_string()))?;
        let keypair = keypair(broker.signing_key());
        let service = Arc::new(BrokerService::new(broker, pool));
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
