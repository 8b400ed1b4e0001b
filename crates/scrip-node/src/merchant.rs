//! A merchant's node: serves Buy item and the catalog, registers at the broker,
//! and forwards payment records to it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libp2p::Multiaddr;
use scrip_core::merchant::Settlement;
use scrip_core::store::{SweepFrom, Swept};
use scrip_core::{CatalogItem, Merchant, MerchantConfig, MerchantKeys};
use scrip_proto::msg::{BrokerResponse, MerchantRequest, MerchantResponse};
use scrip_proto::{decode, encode, AccountNumber, Pin, Refusal, RequestId, Timestamp};
use scrip_store_sqlite::SqliteMerchantStore;

use crate::group::Grouped;
use crate::link::BrokerLink;
use crate::node::{Handler, Inbound, Node, NodeConfig};
use crate::{keypair, now, protocol, NetError, NetOptions};

/// How many payment records travel in one batch.
const RECORDS_PER_BATCH: usize = 256;
/// How often queued payment records are forwarded.
const FORWARD_EVERY: Duration = Duration::from_millis(200);
/// How many sales one transaction of the sweep of expired sales looks at
/// (`Merchant::forget_expired_sales`): it holds the store for 0.5 ms when it
/// forgets nothing, and about 3 ms when it forgets them all.
const SALES_PER_SWEEP_WINDOW: usize = 1024;
/// How often the sweep runs, and how long one round may go on, window after
/// window, releasing the store between them: at most a tenth of a core,
/// and only while it finds sales to forget.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
const SWEEP_BUDGET: Duration = Duration::from_millis(20);
/// How far the wall clock may run ahead of the node's monotonic clock before
/// the sweep stops: a clock set forward would forget sales whose scrip is
/// still good, and if it were then set back, that scrip could be spent again.
const CLOCK_AHEAD_LIMIT: Duration = Duration::from_secs(3600);
/// How often the rendezvous registration is renewed. Its lifetime is two
/// hours, but a restarted broker forgets every registration: renewing often
/// lets customers find running merchants again within seconds. One small
/// request per merchant every few seconds is cheap for the broker.
const RENEW_REGISTRATION_EVERY: Duration = Duration::from_secs(5);

/// Why a merchant could not start.
#[derive(Debug, thiserror::Error)]
pub enum MerchantStartError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("cannot open the merchant's store: {0}")]
    Store(String),
    #[error("the broker refused the registration: {0}")]
    Refused(Refusal),
}

/// The merchant and its store, shared by the request handlers.
pub struct MerchantService {
    merchant: Merchant,
    store: Grouped<SqliteMerchantStore, MerchantRequest, MerchantResponse>,
}

impl MerchantService {
    pub fn merchant(&self) -> &Merchant {
        &self.merchant
    }

    /// Answers one inbound request: validates locally, no call to the broker.
    /// Buys are answered in groups, one durable commit per group (see [`Grouped`]).
    pub fn handle(&self, inbound: Inbound) -> Vec<u8> {
        let response = match decode::<MerchantRequest>(&inbound.request) {
            // The catalog is in memory: it neither waits for a group commit
            // nor makes one.
            Ok(MerchantRequest::Catalog) if inbound.protocol == protocol::CATALOG => {
                MerchantResponse::Catalog(self.merchant.catalog())
            }
            Ok(request) if protocol::for_merchant_request(&request) == inbound.protocol => {
                self.store.submit(
                    request,
                    |store, group| {
                        self.merchant
                            .answer_group(store, now(), &mut rand::rngs::OsRng, &group)
                    },
                    || MerchantResponse::Refused(Refusal::Unavailable),
                )
            }
            Ok(request) => MerchantResponse::Refused(Refusal::invalid_request(format!(
                "a {} request does not belong on {}",
                protocol::for_merchant_request(&request),
                inbound.protocol
            ))),
            Err(error) => MerchantResponse::Refused(error.into()),
        };
        encode(&response)
    }

    /// Sends every queued payment record to the broker, batch by batch. The
    /// store work runs on a blocking thread, not on the node's async workers.
    pub async fn forward_payment_records(
        self: &Arc<Self>,
        link: &BrokerLink,
    ) -> Result<Settlement, NetError> {
        let mut total = Settlement::default();
        loop {
            let batch = self
                .blocking(|service| {
                    service
                        .merchant
                        .poll_payment_records(&mut *service.store.store(), RECORDS_PER_BATCH)
                })
                .await?;
            let batch = match batch {
                Ok(Some(batch)) => batch,
                Ok(None) => return Ok(total),
                Err(refusal) => return Err(NetError::Request(refusal.to_string())),
            };
            let answer = link.call(&batch).await?;
            let settled = self
                .blocking(move |service| {
                    let mut store = service.store.store();
                    service.merchant.handle_payment_records_ack(
                        &mut *store,
                        &answer.response,
                        &answer.receipts,
                    )
                })
                .await?;
            match settled {
                Ok(settlement) => {
                    total.recorded += settlement.recorded;
                    total.credited = total
                        .credited
                        .checked_add(settlement.credited)
                        .unwrap_or(total.credited);
                    total.refused.extend(settlement.refused);
                }
                // The records stay queued and go again on the next round.
                Err(refusal) => {
                    return Err(NetError::Request(format!(
                        "the broker did not take the payment records: {refusal}"
                    )))
                }
            }
        }
    }

    /// Forgets expired sales, one window of the sweep, in a transaction of its own.
    async fn forget_expired_sales(
        self: &Arc<Self>,
        now: Timestamp,
        from: SweepFrom,
    ) -> Result<Swept, NetError> {
        self.blocking(move |service| {
            service.merchant.forget_expired_sales(
                &mut *service.store.store(),
                now,
                SALES_PER_SWEEP_WINDOW,
                from,
            )
        })
        .await?
        .map_err(|error| NetError::Request(error.to_string()))
    }

    /// Runs store work on tokio's blocking threads.
    async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&MerchantService) -> R + Send + 'static,
    ) -> Result<R, NetError> {
        let service = Arc::clone(self);
        tokio::task::spawn_blocking(move || work(&service))
            .await
            .map_err(|error| NetError::Request(format!("store work failed: {error}")))
    }
}

/// A running merchant node.
pub struct MerchantNode {
    pub node: Node,
    pub service: Arc<MerchantService>,
    pub link: BrokerLink,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// What a merchant needs to start selling.
pub struct MerchantSetup {
    pub keys: MerchantKeys,
    pub config: MerchantConfig,
    pub catalog: Vec<CatalogItem>,
    /// The account its sales are credited to, and the account's PIN (used once, to register).
    pub account: AccountNumber,
    pub pin: Pin,
}

impl MerchantNode {
    /// Starts serving on `listen`, registers at the broker (licence sealed to
    /// it) and at its rendezvous point, and starts forwarding payment records.
    pub async fn start(
        setup: MerchantSetup,
        database: &Path,
        listen: Vec<Multiaddr>,
        broker: Multiaddr,
        options: NetOptions,
    ) -> Result<MerchantNode, MerchantStartError> {
        crate::fault::arm_from_env()?;
        let mut store = SqliteMerchantStore::open(database)
            .map_err(|e| MerchantStartError::Store(e.to_string()))?;
        let mut config = NodeConfig::new(keypair(&setup.keys.signing));
        config.listen = listen;
        config.serve = protocol::MERCHANT_PROTOCOLS.to_vec();
        config.call = protocol::BROKER_PROTOCOLS.to_vec();
        config.rendezvous_client = true;
        config.mdns = options.mdns;
        // The handler needs the merchant, which needs the broker's info, which
        // needs the node: the handler reads the service from a cell filled below.
        let cell: Arc<std::sync::OnceLock<Arc<MerchantService>>> = Arc::default();
        let handler_cell = cell.clone();
        let handler: Handler = Arc::new(move |inbound| match handler_cell.get() {
            Some(service) => service.handle(inbound),
            None => encode(&MerchantResponse::Refused(Refusal::Unavailable)),
        });
        let (node, driver) = Node::start(config, Some(handler)).await?;
        let link = BrokerLink::connect(node.clone(), broker).await?;
        let merchant = Merchant::new(setup.keys, link.info().clone(), setup.config, setup.catalog);
        let registration = merchant
            .registration_request(
                &mut rand::rngs::OsRng,
                RequestId::random(&mut rand::rngs::OsRng),
                setup.account,
                setup.pin,
            )
            .map_err(MerchantStartError::Refused)?;
        let answer = link.call(&registration).await?;
        match answer.response {
            BrokerResponse::MerchantRegistered(_) => merchant
                .keep_log_receipts(&mut store, &answer.receipts)
                .map_err(MerchantStartError::Refused)?,
            BrokerResponse::Refused(refusal) => return Err(MerchantStartError::Refused(refusal)),
            other => {
                return Err(NetError::BadAnswer(format!(
                    "unexpected answer to registration: {other:?}"
                ))
                .into())
            }
        }
        link.register_as_merchant().await?;
        let service = Arc::new(MerchantService {
            merchant,
            store: Grouped::new(store),
        });
        let _ = cell.set(service.clone());
        let forwarder = tokio::spawn(forward_forever(service.clone(), link.clone()));
        let sweeper = tokio::spawn(sweep_forever(service.clone()));
        Ok(MerchantNode {
            node,
            service,
            link,
            tasks: vec![driver, forwarder, sweeper],
        })
    }

    /// Forwards what is queued now, then stops the node.
    pub async fn shutdown(self) {
        if let Err(error) = self.service.forward_payment_records(&self.link).await {
            tracing::warn!(%error, "payment records stay queued for the next run");
        }
        self.node.shutdown().await;
        for task in self.tasks {
            task.abort();
        }
    }
}

async fn forward_forever(service: Arc<MerchantService>, link: BrokerLink) {
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(FORWARD_EVERY).await;
        match service.forward_payment_records(&link).await {
            Ok(settlement) if settlement.recorded > 0 => {
                tracing::info!(recorded = settlement.recorded, credited = %settlement.credited, "payment records settled")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "payment records stay queued; retrying"),
        }
        if renewed.elapsed() >= RENEW_REGISTRATION_EVERY {
            match link.register_as_merchant().await {
                Ok(()) => renewed = tokio::time::Instant::now(),
                Err(error) => tracing::warn!(%error, "cannot renew the rendezvous registration"),
            }
        }
    }
}

/// Forgets expired sales, a round every [`SWEEP_EVERY`]: windows of the
/// oldest sales, where expired ones mostly are, then windows from the
/// sweep's place, which walks the rest; each goes on while its windows
/// forget something, within [`SWEEP_BUDGET`]. So a round that finds nothing
/// holds the store twice for 0.5 ms. The sweep pauses while the wall clock
/// is ahead of where the monotonic clock says it should be.
async fn sweep_forever(service: Arc<MerchantService>) {
    let (started, started_at) = (std::time::Instant::now(), now());
    let mut warned = false;
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let at = now();
        let expected = started_at.plus_seconds(started.elapsed().as_secs());
        if at.0 > expected.0.saturating_add(CLOCK_AHEAD_LIMIT.as_secs()) {
            if !warned {
                tracing::warn!(%at, %expected, "the clock jumped ahead: expired sales are not forgotten until the merchant restarts with a correct clock");
                warned = true;
            }
            continue;
        }
        let round = std::time::Instant::now();
        let mut forgotten = 0;
        'round: for from in [SweepFrom::Oldest, SweepFrom::Where] {
            loop {
                match service.forget_expired_sales(at, from).await {
                    Ok(swept) => {
                        forgotten += swept.forgotten;
                        if swept.forgotten == 0
                            || swept.reached_newest
                            || round.elapsed() >= SWEEP_BUDGET
                        {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot forget expired sales; retrying");
                        break 'round;
                    }
                }
            }
        }
        if forgotten > 0 {
            tracing::info!(forgotten, "expired sales forgotten");
        }
    }
}
