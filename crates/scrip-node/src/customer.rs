//! The customer's side: a wallet that talks to the broker and to merchants
//! from an ephemeral peer identity, never its account key, so a merchant
//! cannot link purchases to an account or to each other by peer id.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::{identity, Multiaddr, PeerId};
use scrip_core::store::{Destination, PendingRequest};
use scrip_core::wallet::{BrokerOutcome, Delivered};
use scrip_core::{Wallet, WalletError, WalletKeys};
use scrip_proto::msg::{
    BrokerAnswer, CatalogListing, LogReceipt, MerchantEntry, MerchantRequest, MerchantResponse,
    Purchase,
};
use scrip_proto::{
    decode, encode, AccountNumber, Amount, MerchantId, Pin, Refusal, Scrip, ScripKind,
};
use scrip_store_sqlite::SqliteWalletStore;

use crate::link::{call_with_retry, BrokerLink, LogVerification};
use crate::node::{Node, NodeConfig};
use crate::{now, peer_id, protocol, NetError, NetOptions};

/// How long a purchase whose item has arrived still waits for the broker's
/// receipt of its intent, which normally comes a fraction of a millisecond
/// after the item.
const INTENT_GRACE: Duration = Duration::from_secs(5);

/// Why a customer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CustomerError {
    #[error(transparent)]
    Wallet(#[from] WalletError),
    #[error("{0}; the outcome is unknown and the request is kept: the next wallet command resends it with the same request id, so check `balance` before asking again")]
    Net(#[from] NetError),
    #[error(
        "no merchant {0:?} is registered at the broker; `scrip wallet DIR merchants` lists them"
    )]
    UnknownMerchant(String),
    #[error("merchant {0} is registered but not reachable now: it has no address at the rendezvous point; try again shortly")]
    Unreachable(String),
    #[error(
        "the merchant sells no item {0:?}; `scrip wallet DIR catalog MERCHANT` lists what it sells"
    )]
    NotForSale(String),
}

impl CustomerError {
    /// The refusal behind this error, if a peer refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            CustomerError::Wallet(WalletError::Refused(refusal)) => Some(refusal),
            _ => None,
        }
    }

    /// True when trying again later may succeed: the outcome is unknown (a
    /// network failure or an unavailable peer), or a merchant is not reachable yet.
    pub fn worth_retrying(&self) -> bool {
        matches!(
            self,
            CustomerError::Net(_)
                | CustomerError::Unreachable(_)
                | CustomerError::Wallet(WalletError::BadResponse(_))
        ) || self.refusal().is_some_and(|r| !r.definitive())
    }
}

/// A wallet on the network.
pub struct Customer {
    link: BrokerLink,
    wallet: Wallet,
    store: SqliteWalletStore,
    /// Merchants' addresses found at the rendezvous point, by peer id.
    addresses: HashMap<PeerId, Vec<Multiaddr>>,
    /// Prices seen in each merchant's catalog, so a purchase costs two round
    /// trips, not three. Forgotten when the merchant refuses a purchase.
    prices: HashMap<MerchantId, CatalogListing>,
    _driver: tokio::task::JoinHandle<()>,
}

impl Customer {
    /// Starts an ephemeral node, connects to the broker and resends any
    /// request a previous run left pending.
    pub async fn connect(
        broker: Multiaddr,
        keys: WalletKeys,
        store: SqliteWalletStore,
        options: NetOptions,
    ) -> Result<Customer, CustomerError> {
        let mut config = NodeConfig::new(identity::Keypair::generate_ed25519());
        config.call = protocol::BROKER_PROTOCOLS
            .iter()
            .chain(protocol::MERCHANT_PROTOCOLS.iter())
            .cloned()
            .collect();
        config.rendezvous_client = true;
        config.mdns = options.mdns;
        let (node, driver) = Node::start(config, None).await?;
        let link = BrokerLink::connect(node, broker).await?;
        let wallet = Wallet::new(keys, link.info().clone());
        let mut customer = Customer {
            link,
            wallet,
            store,
            addresses: HashMap::new(),
            prices: HashMap::new(),
            _driver: driver,
        };
        customer.recover().await;
        Ok(customer)
    }

    /// The link to the broker this customer talks through.
    pub fn link(&self) -> &BrokerLink {
        &self.link
    }

    pub fn wallet(&self) -> &Wallet {
        &self.wallet
    }

    /// Every scrip the wallet holds, with its state.
    pub fn scrip(&mut self) -> Result<Vec<scrip_core::store::WalletScrip>, WalletError> {
        self.wallet.scrip(&mut self.store)
    }

    /// Sends a request of your own making to a merchant, bypassing the wallet:
    /// for demonstrations and tests of what merchants refuse.
    pub async fn merchant_request(
        &mut self,
        merchant: MerchantId,
        request: &MerchantRequest,
    ) -> Result<MerchantResponse, CustomerError> {
        self.merchant_call(merchant, &encode(request)).await
    }

    /// What the wallet holds, by kind and merchant.
    pub fn balances(&mut self) -> Result<scrip_core::wallet::Balances, WalletError> {
        self.wallet.balances(&mut self.store)
    }

    /// Resends every pending request, broker requests first (an intent
    /// before its buy, as [`Customer::buy`] sends them). The items of
    /// purchases completed here are kept in the wallet ([`Customer::items`]).
    pub async fn recover(&mut self) {
        let Ok(mut pending) = self.wallet.pending(&mut self.store) else {
            return;
        };
        pending.sort_by_key(|p| !matches!(p.destination, Destination::Broker));
        for request in pending {
            tracing::info!(request = %request.request_id, "resending a request left pending");
            let outcome = match request.destination {
                Destination::Broker => self.send_to_broker(&request).await.map(drop),
                Destination::Merchant(merchant) => {
                    self.send_to_merchant(&request, merchant).await.map(drop)
                }
            };
            if let Err(error) = outcome {
                tracing::warn!(%error, request = %request.request_id, "pending request not settled");
            }
        }
    }

    /// The wallet's store, for what needs no network: the items it keeps
    /// (`scrip_core::wallet::kept_items`, `forget_item`), bought by
    /// [`Customer::buy`] or completed by [`Customer::recover`].
    pub fn store(&mut self) -> &mut SqliteWalletStore {
        &mut self.store
    }

    /// Step 1: Obtain BrokerScrip with a macro-payment from the account.
    pub async fn obtain_broker_scrip(
        &mut self,
        account: AccountNumber,
        pin: Pin,
        amount: Amount,
    ) -> Result<Vec<Scrip>, CustomerError> {
        let pending = self.wallet.obtain_broker_scrip(
            &mut self.store,
            &mut rand::rngs::OsRng,
            account,
            pin,
            amount,
        )?;
        self.send_to_broker(&pending).await
    }

    /// Step 2: Obtain VendorScrip of `merchant` for BrokerScrip.
    pub async fn obtain_vendor_scrip(
        &mut self,
        merchant: MerchantId,
        amount: Amount,
    ) -> Result<Vec<Scrip>, CustomerError> {
        let pending = self.wallet.obtain_vendor_scrip(
            &mut self.store,
            &mut rand::rngs::OsRng,
            now(),
            merchant,
            amount,
        )?;
        self.send_to_broker(&pending).await
    }

    /// The merchants registered at the broker.
    pub async fn merchants(&self) -> Result<Vec<MerchantEntry>, CustomerError> {
        self.link
            .directory()
            .await?
            .map_err(|refusal| CustomerError::Wallet(WalletError::Refused(refusal)))
    }

    /// Finds a merchant by registered name, peer id or merchant id.
    pub async fn resolve(&self, name_or_id: &str) -> Result<MerchantEntry, CustomerError> {
        self.merchants()
            .await?
            .into_iter()
            .find(|m| {
                m.name == name_or_id
                    || m.merchant.to_string() == name_or_id
                    || peer_id(&m.merchant).is_some_and(|p| p.to_string() == name_or_id)
            })
            .ok_or_else(|| CustomerError::UnknownMerchant(name_or_id.to_owned()))
    }

    /// The merchant's catalog, asked of the merchant itself.
    pub async fn catalog(&mut self, merchant: MerchantId) -> Result<CatalogListing, CustomerError> {
        match self
            .merchant_call(merchant, &encode(&MerchantRequest::Catalog))
            .await?
        {
            MerchantResponse::Catalog(listing) if listing.merchant == merchant => Ok(listing),
            MerchantResponse::Refused(refusal) => Err(WalletError::Refused(refusal).into()),
            _ => Err(NetError::BadAnswer(
                "the merchant answered a catalog request with something else".into(),
            )
            .into()),
        }
    }

    /// Step 3, Buy item: obtains VendorScrip first if the wallet holds too
    /// little for this merchant (`top_up`, or ten times the price as far as
    /// the largest BrokerScrip allows), announces the payment to the broker
    /// and pays the merchant right after, without waiting for the broker's
    /// receipt, and keeps the change. The purchase's outcome is the
    /// merchant's answer.
    pub async fn buy(
        &mut self,
        merchant: MerchantId,
        item: &str,
        top_up: Option<Amount>,
    ) -> Result<Delivered, CustomerError> {
        let catalog = match self.prices.get(&merchant) {
            Some(catalog) => catalog.clone(),
            None => {
                let catalog = self.catalog(merchant).await?;
                self.prices.insert(merchant, catalog.clone());
                catalog
            }
        };
        let price = catalog
            .items
            .iter()
            .find(|i| i.id == item)
            .map(|i| i.price)
            .ok_or_else(|| CustomerError::NotForSale(item.to_owned()))?;
        let purchase = match self.wallet.buy(
            &mut self.store,
            &mut rand::rngs::OsRng,
            now(),
            merchant,
            Purchase::Item(item.to_owned()),
            price,
        ) {
            Ok(purchase) => purchase,
            Err(WalletError::NoScrip { .. }) => {
                let amount = top_up.unwrap_or_else(|| self.default_top_up(price));
                self.obtain_vendor_scrip(merchant, amount.max(price))
                    .await?;
                self.wallet.buy(
                    &mut self.store,
                    &mut rand::rngs::OsRng,
                    now(),
                    merchant,
                    Purchase::Item(item.to_owned()),
                    price,
                )?
            }
            Err(error) => return Err(error.into()),
        };
        // The intent is an observation, not an authorisation (PROTOCOL.md
        // 4.5): nothing the broker answers changes whether to pay, so the Buy
        // follows it at once instead of a round trip later.
        let (peer, addresses) = self.merchant_peer(merchant).await?;
        let (wallet, store, link, prices) =
            (&self.wallet, &mut self.store, &self.link, &mut self.prices);
        let intent_call = link.call_bytes(&purchase.intent.request);
        let buy_call = call_merchant(link.node(), peer, &addresses, &purchase.buy.request);
        tokio::pin!(intent_call, buy_call);
        // Each answer is taken in as it arrives, while the other is on its way.
        let (mut intent, mut bought) = (None, None);
        while bought.is_none() {
            tokio::select! {
                answer = &mut intent_call, if intent.is_none() => {
                    intent = Some(take_broker_answer(wallet, store, &purchase.intent, answer));
                }
                response = &mut buy_call => {
                    bought = Some(take_merchant_answer(wallet, store, prices, merchant, &purchase.buy, response));
                }
            }
        }
        // The item is paid for and kept in the wallet: a broker slow to
        // record the intent (its retries can take a minute) must not keep the
        // user from it. An intent still unanswered stays pending in the
        // wallet and is resent on the next connect.
        if intent.is_none() {
            match tokio::time::timeout(INTENT_GRACE, &mut intent_call).await {
                Ok(answer) => {
                    intent = Some(take_broker_answer(wallet, store, &purchase.intent, answer));
                }
                Err(_) => tracing::warn!(
                    request = %purchase.intent.request_id,
                    "the broker has not recorded the intent of a purchase yet; it stays pending, to be resent on the next connect"
                ),
            }
        }
        if let Some(Err(error)) = intent {
            // The purchase stands without its intent; one left pending is resent on the next connect.
            tracing::warn!(%error, request = %purchase.intent.request_id, "the broker did not record the intent of a purchase");
        }
        bought.expect("the loop ends with the merchant's answer")
    }

    fn default_top_up(&mut self, price: Amount) -> Amount {
        let largest = self
            .wallet
            .scrip(&mut self.store)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| {
                s.scrip.body.kind == ScripKind::Broker
                    && s.state == scrip_core::store::ScripState::Available
                    && s.scrip.body.expiry > now()
            })
            .map(|s| s.scrip.value())
            .max()
            .unwrap_or(Amount::ZERO);
        let ten_times = Amount::from_minor(price.minor().saturating_mul(10)).unwrap_or(Amount::MAX);
        ten_times.min(largest).max(price)
    }

    async fn send_to_broker(
        &mut self,
        pending: &PendingRequest,
    ) -> Result<Vec<Scrip>, CustomerError> {
        let answer = self.link.call_bytes(&pending.request).await;
        take_broker_answer(&self.wallet, &mut self.store, pending, answer)
    }

    /// Checks every log receipt the wallet kept, and `more` (a merchant's,
    /// from the same peer directory), against the broker's log as it is now.
    pub async fn verify_log(
        &mut self,
        more: Vec<LogReceipt>,
    ) -> Result<LogVerification, CustomerError> {
        let mut receipts: Vec<LogReceipt> = self
            .wallet
            .receipts(&mut self.store)?
            .into_iter()
            .filter_map(|r| match r {
                scrip_core::store::WalletReceipt::Log(receipt) => Some(receipt),
                _ => None,
            })
            .collect();
        receipts.extend(more);
        Ok(self.link.verify_receipts(&receipts).await?)
    }

    async fn send_to_merchant(
        &mut self,
        pending: &PendingRequest,
        merchant: MerchantId,
    ) -> Result<Delivered, CustomerError> {
        let response = self.merchant_call(merchant, &pending.request).await;
        take_merchant_answer(
            &self.wallet,
            &mut self.store,
            &mut self.prices,
            merchant,
            pending,
            response,
        )
    }

    async fn merchant_call(
        &mut self,
        merchant: MerchantId,
        request: &[u8],
    ) -> Result<MerchantResponse, CustomerError> {
        let (peer, addresses) = self.merchant_peer(merchant).await?;
        call_merchant(self.link.node(), peer, &addresses, request).await
    }

    /// The merchant's peer and addresses.
    async fn merchant_peer(
        &mut self,
        merchant: MerchantId,
    ) -> Result<(PeerId, Vec<Multiaddr>), CustomerError> {
        let peer = peer_id(&merchant)
            .ok_or_else(|| CustomerError::UnknownMerchant(merchant.to_string()))?;
        Ok((peer, self.locate(peer).await?))
    }

    /// The merchant's addresses, from the broker's rendezvous point, or else
    /// from mDNS on the local network when that is on.
    async fn locate(&mut self, peer: PeerId) -> Result<Vec<Multiaddr>, CustomerError> {
        if let Some(addresses) = self.addresses.get(&peer) {
            return Ok(addresses.clone());
        }
        for found in self.link.discover_merchants().await? {
            self.addresses.insert(found.peer, found.addresses);
        }
        if !self.addresses.contains_key(&peer) {
            for found in self.link.node().lan_peers().await? {
                self.addresses.entry(found.peer).or_insert(found.addresses);
            }
        }
        self.addresses
            .get(&peer)
            .cloned()
            .ok_or_else(|| CustomerError::Unreachable(peer.to_string()))
    }
}

/// Takes the broker's answer to a pending request into the wallet.
fn take_broker_answer(
    wallet: &Wallet,
    store: &mut SqliteWalletStore,
    pending: &PendingRequest,
    answer: Result<BrokerAnswer, NetError>,
) -> Result<Vec<Scrip>, CustomerError> {
    let answer = answer?;
    let outcome = wallet.handle_broker_response(
        store,
        pending.request_id,
        &answer.response,
        &answer.receipts,
    )?;
    match outcome {
        BrokerOutcome::Scrip(scrip) => Ok(scrip),
        BrokerOutcome::IntentRecorded => Ok(Vec::new()),
    }
}

/// Takes a merchant's answer to a pending request into the wallet.
fn take_merchant_answer(
    wallet: &Wallet,
    store: &mut SqliteWalletStore,
    prices: &mut HashMap<MerchantId, CatalogListing>,
    merchant: MerchantId,
    pending: &PendingRequest,
    response: Result<MerchantResponse, CustomerError>,
) -> Result<Delivered, CustomerError> {
    let response = response?;
    if let MerchantResponse::Refused(_) = response {
        // A changed price or a withdrawn item: ask for the catalog again next time.
        prices.remove(&merchant);
    }
    Ok(wallet.handle_merchant_response(store, pending.request_id, &response)?)
}

/// Sends request bytes to a merchant at `addresses`.
async fn call_merchant(
    node: &Node,
    peer: PeerId,
    addresses: &[Multiaddr],
    request: &[u8],
) -> Result<MerchantResponse, CustomerError> {
    let decoded: MerchantRequest =
        decode(request).map_err(|e| NetError::BadAnswer(e.to_string()))?;
    let bytes = call_with_retry(
        node,
        peer,
        addresses,
        protocol::for_merchant_request(&decoded),
        request,
    )
    .await?;
    Ok(decode(&bytes).map_err(|e| NetError::BadAnswer(e.to_string()))?)
}
