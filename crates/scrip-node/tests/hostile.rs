//! Hostile peers against a real broker and merchant on libp2p.
//!
//! Malformed, truncated and oversized frames, broken framing, messages on the
//! wrong protocol, unknown protocol versions and requests from unknown peers
//! get an error response or a closed stream, change nothing in the broker's
//! store, and the nodes keep serving everyone else: afterwards an unknown peer
//! reads the broker's info and directory, and well-behaved customers still
//! obtain scrip and buy.

mod common;

use std::io;
use std::time::{Duration, Instant};

use common::{open_account, start_broker};
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, OutboundFailure, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{identity, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol};
use rand::rngs::OsRng;
use rand::RngCore;
use scrip_core::wallet::BrokerOutcome;
use scrip_core::{CatalogItem, MerchantConfig, MerchantKeys, Wallet, WalletKeys};
use scrip_node::codec::FrameCodec;
use scrip_node::customer::Customer;
use scrip_node::merchant::{MerchantNode, MerchantSetup};
use scrip_node::node::{Node, NodeConfig};
use scrip_node::protocol::{self, BROKER_PROTOCOLS, MERCHANT_PROTOCOLS};
use scrip_node::{now, NetError};
use scrip_proto::encoding::MAX_MESSAGE_LEN;
use scrip_proto::msg::{
    BrokerInfo, BrokerResponse, MerchantDirectory, MerchantRequest, MerchantResponse, Purchase,
};
use scrip_proto::{decode, encode, Amount, Refusal, Secret32};
use scrip_store_sqlite::{SqliteBrokerStore, SqliteWalletStore};

/// Longer than any honest exchange on loopback takes, far shorter than the
/// clients' request timeout: an exchange that runs into it hung.
const GUARD: Duration = Duration::from_secs(5);
/// The hostile clients' own request timeout, so a hang shows as a hang and
/// not as a prompt `Timeout` failure.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stream that never finishes its frame may stay open: the
/// broker's request timeout (ten seconds by default) and some slack.
const SLOW_LIMIT: Duration = Duration::from_secs(15);

fn amount(text: &str) -> Amount {
    text.parse().expect("test amount")
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    OsRng.fill_bytes(&mut bytes);
    bytes
}

/// One request through a [`Node`], failing the test if it hangs.
async fn ask(
    node: &Node,
    peer: PeerId,
    address: &Multiaddr,
    protocol: StreamProtocol,
    request: Vec<u8>,
) -> Result<Vec<u8>, NetError> {
    let what = format!("{} bytes on {protocol}", request.len());
    tokio::time::timeout(
        GUARD,
        node.request(peer, vec![address.clone()], protocol, request),
    )
    .await
    .unwrap_or_else(|_| panic!("{what}: no answer and no closed stream within {GUARD:?}"))
}

/// Asks the broker and decodes its answer, which must come.
async fn broker_answer(
    node: &Node,
    broker: &(PeerId, Multiaddr),
    protocol: StreamProtocol,
    request: Vec<u8>,
) -> BrokerResponse {
    let what = format!("{} bytes on {protocol}", request.len());
    let bytes = ask(node, broker.0, &broker.1, protocol, request)
        .await
        .unwrap_or_else(|e| panic!("{what}: the broker gave no answer: {e}"));
    decode::<scrip_proto::msg::BrokerAnswer>(&bytes)
        .unwrap_or_else(|e| panic!("{what}: the broker's answer is not a response: {e}"))
        .response
}

/// Asks the merchant and decodes its answer, which must come.
async fn merchant_answer(
    node: &Node,
    merchant: &(PeerId, Multiaddr),
    protocol: StreamProtocol,
    request: Vec<u8>,
) -> MerchantResponse {
    let what = format!("{} bytes on {protocol}", request.len());
    let bytes = ask(node, merchant.0, &merchant.1, protocol, request)
        .await
        .unwrap_or_else(|e| panic!("{what}: the merchant gave no answer: {e}"));
    decode(&bytes)
        .unwrap_or_else(|e| panic!("{what}: the merchant's answer is not a response: {e}"))
}

fn assert_broker_malformed(response: BrokerResponse, what: &str) {
    assert!(
        matches!(response, BrokerResponse::Refused(Refusal::Malformed(_))),
        "{what}: expected Refused(Malformed), got {response:?}"
    );
}

fn assert_merchant_malformed(response: MerchantResponse, what: &str) {
    assert!(
        matches!(response, MerchantResponse::Refused(Refusal::Malformed(_))),
        "{what}: expected Refused(Malformed), got {response:?}"
    );
}

// ---- A raw client: any protocol name, any bytes on the stream ------------------

/// Writes a request's bytes as they are (no length prefix added), then
/// closes the stream; or, with `trickle`, keeps the stream open forever,
/// adding one byte every 200 ms, until the peer closes it. Reads a response
/// as the product frames it.
#[derive(Clone)]
struct RawCodec {
    trickle: bool,
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<Vec<u8>> {
        Err(io::Error::other("the raw client serves nothing"))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        protocol: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        request_response::Codec::read_response(&mut FrameCodec::default(), protocol, io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&request).await?;
        io.flush().await?;
        if self.trickle {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                io.write_all(&[0]).await?;
                io.flush().await?;
            }
        }
        io.close().await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()> {
        Err(io::Error::other("the raw client serves nothing"))
    }
}

/// A length prefix and a body, as the product frames a message.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// Sends `raw` on `protocol` from a fresh identity and returns the framed
/// answer or the failure. Panics if neither comes within [`GUARD`].
async fn raw_exchange(
    target: &(PeerId, Multiaddr),
    protocol: &'static str,
    raw: Vec<u8>,
) -> Result<Vec<u8>, OutboundFailure> {
    raw_exchange_within(target, protocol, raw, false, GUARD).await
}

async fn raw_exchange_within(
    target: &(PeerId, Multiaddr),
    protocol: &'static str,
    raw: Vec<u8>,
    trickle: bool,
    limit: Duration,
) -> Result<Vec<u8>, OutboundFailure> {
    let what = format!("raw {} bytes on {protocol}", raw.len());
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec { trickle },
                [(StreamProtocol::new(protocol), ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(CLIENT_TIMEOUT),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(CLIENT_TIMEOUT))
        .build();
    swarm.add_peer_address(target.0, target.1.clone());
    let id = swarm.behaviour_mut().send_request(&target.0, raw);
    let exchange = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }) if request_id == id => return Ok(response),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    error,
                    ..
                }) if request_id == id => return Err(error),
                _ => {}
            }
        }
    };
    tokio::time::timeout(limit, exchange)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer and no closed stream within {limit:?}"))
}

// ---- The test -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_get_refusals_or_closed_streams_and_everyone_else_is_served() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("broker.sqlite");

    // A broker, and a second connection to its database for the operator.
    let broker_node = start_broker(&Secret32::random(&mut OsRng), &db).await;
    let broker_address = broker_node.node.listen_addresses()[0].clone();
    let broker_peer = broker_node.node.peer_id();
    let broker_info: BrokerInfo = broker_node.service.broker().info();
    let mut admin = SqliteBrokerStore::open(&db).expect("operator's connection");
    let operator = broker_node.service.broker();
    let mut open = |name: &str, deposit: &str| open_account(operator, &mut admin, name, deposit);
    let shop_account = open("tea shop", "0");
    let mallory_account = open("mallory", "50.00");
    let alice_account = open("alice", "100.00");

    // A merchant selling tea.
    let merchant_keys = MerchantKeys::from_seed(&Secret32::random(&mut OsRng));
    let merchant_id = merchant_keys.public_key();
    let merchant_node = MerchantNode::start(
        MerchantSetup {
            keys: merchant_keys,
            config: MerchantConfig::new("tea-shop"),
            catalog: vec![CatalogItem {
                id: "tea".into(),
                title: "A pot of tea".into(),
                price: amount("1.50"),
                content: b"a pot of green tea".to_vec(),
            }],
            account: shop_account.number,
            pin: shop_account.pin.clone(),
        },
        &dir.path().join("merchant.sqlite"),
        vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        broker_address.clone(),
        scrip_node::NetOptions::default(),
    )
    .await
    .expect("merchant starts");
    let merchant_address = merchant_node.node.listen_addresses()[0].clone();
    let merchant_peer = merchant_node.node.peer_id();
    assert_eq!(scrip_node::peer_id(&merchant_id), Some(merchant_peer));

    let broker = (broker_peer, broker_address.clone());
    let merchant = (merchant_peer, merchant_address.clone());

    // The hostile client: an unknown identity that calls every step, with a
    // frame limit above the nodes' so it can send oversized frames.
    let mut hostile_config = NodeConfig::new(identity::Keypair::generate_ed25519());
    hostile_config.call = BROKER_PROTOCOLS
        .iter()
        .chain(MERCHANT_PROTOCOLS.iter())
        .cloned()
        .collect();
    hostile_config.max_frame = 4 * MAX_MESSAGE_LEN;
    hostile_config.request_timeout = CLIENT_TIMEOUT;
    let (hostile, hostile_task) = Node::start(hostile_config, None)
        .await
        .expect("hostile client starts");

    // Mallory's wallet makes real messages to cut, pad and misroute: an
    // Obtain BrokerScrip, an Intent and a Buy (the last two not sent yet).
    let mallory = Wallet::new(
        WalletKeys::from_seed(&Secret32::random(&mut OsRng)),
        broker_info.clone(),
    );
    let mut mallory_store = SqliteWalletStore::open_in_memory().expect("wallet store");
    let obtain = mallory
        .obtain_broker_scrip(
            &mut mallory_store,
            &mut OsRng,
            mallory_account.number,
            mallory_account.pin.clone(),
            amount("5.00"),
        )
        .expect("obtain broker scrip");
    let response = broker_answer(
        &hostile,
        &broker,
        protocol::BROKER_SCRIP,
        obtain.request.clone(),
    )
    .await;
    mallory
        .handle_broker_response(&mut mallory_store, obtain.request_id, &response, &[])
        .expect("mallory obtains broker scrip");
    let vendor = mallory
        .obtain_vendor_scrip(
            &mut mallory_store,
            &mut OsRng,
            now(),
            merchant_id,
            amount("3.00"),
        )
        .expect("obtain vendor scrip");
    let response = broker_answer(
        &hostile,
        &broker,
        protocol::VENDOR_SCRIP,
        vendor.request.clone(),
    )
    .await;
    mallory
        .handle_broker_response(&mut mallory_store, vendor.request_id, &response, &[])
        .expect("mallory obtains vendor scrip");
    let purchase = mallory
        .buy(
            &mut mallory_store,
            &mut OsRng,
            now(),
            merchant_id,
            Purchase::Item("tea".into()),
            amount("1.50"),
        )
        .expect("purchase");
    let intent = purchase.intent.request.clone();
    let buy = purchase.buy.request.clone();

    // Nothing hostile below may change the broker's state.
    let before = admin.fingerprint().expect("fingerprint");

    // A slow peer announces a frame within the limit and trickles it in, one
    // byte at a time, never finishing: it must hold up no one while the rest
    // runs, and the broker must close its stream in the end.
    let slow_target = broker.clone();
    let slow = tokio::spawn(async move {
        let began = Instant::now();
        let mut prefix = ((MAX_MESSAGE_LEN / 2) as u32).to_be_bytes().to_vec();
        prefix.extend_from_slice(&random_bytes(16));
        let result = raw_exchange_within(
            &slow_target,
            "/scrip/vendor-scrip/1",
            prefix,
            true,
            SLOW_LIMIT,
        )
        .await;
        (result, began.elapsed())
    });

    // ---- Malformed bytes on every broker step --------------------------------
    for step in [
        protocol::BROKER_SCRIP,
        protocol::VENDOR_SCRIP,
        protocol::RENEW,
        protocol::REGISTER,
        protocol::INTENT,
        protocol::PAYMENT_RECORD,
    ] {
        for len in [0, 1, 7, 300] {
            let what = format!("{len} random bytes on {step}");
            let answer = broker_answer(&hostile, &broker, step.clone(), random_bytes(len)).await;
            assert_broker_malformed(answer, &what);
        }
    }
    // An enum tag past the last request kind.
    let answer = broker_answer(&hostile, &broker, protocol::VENDOR_SCRIP, vec![0xff; 40]).await;
    assert_broker_malformed(answer, "an unknown request tag");

    // ---- Truncated and padded real requests ------------------------------------
    for (step, message) in [
        (protocol::BROKER_SCRIP, &obtain.request),
        (protocol::VENDOR_SCRIP, &vendor.request),
        (protocol::INTENT, &intent),
    ] {
        for cut in [1, message.len() / 3, message.len() / 2, message.len() - 1] {
            let what = format!("the first {cut} of {} bytes on {step}", message.len());
            let answer =
                broker_answer(&hostile, &broker, step.clone(), message[..cut].to_vec()).await;
            assert_broker_malformed(answer, &what);
        }
        let mut padded = message.clone();
        padded.push(0);
        let what = format!("a request with a trailing byte on {step}");
        assert_broker_malformed(broker_answer(&hostile, &broker, step, padded).await, &what);
    }

    // ---- Valid messages on the wrong protocol ------------------------------------
    for (step, message) in [
        (protocol::INTENT, &obtain.request),
        (protocol::VENDOR_SCRIP, &intent),
        (protocol::RENEW, &vendor.request),
        (protocol::PAYMENT_RECORD, &intent),
    ] {
        let answer = broker_answer(&hostile, &broker, step.clone(), message.clone()).await;
        assert!(
            matches!(answer, BrokerResponse::Refused(Refusal::InvalidRequest { .. })),
            "a message on the wrong protocol {step}: expected Refused(InvalidRequest), got {answer:?}"
        );
    }

    // ---- Oversized frames: the stream closes, no answer --------------------------
    for len in [MAX_MESSAGE_LEN + 1, 3 * MAX_MESSAGE_LEN] {
        let result = ask(
            &hostile,
            broker_peer,
            &broker_address,
            protocol::VENDOR_SCRIP,
            vec![0u8; len],
        )
        .await;
        assert!(
            matches!(result, Err(NetError::Request(_))),
            "a {len}-byte frame to the broker: expected a failed request, got {result:?}"
        );
    }

    // ---- Broken framing and unknown protocols, from raw clients -------------------
    // The raw client is sound: a framed request gets a framed refusal.
    let answer = raw_exchange(&broker, "/scrip/vendor-scrip/1", framed(&[1, 2, 3]))
        .await
        .expect("a framed request gets an answer");
    assert_broker_malformed(
        decode::<scrip_proto::msg::BrokerAnswer>(&answer)
            .expect("a broker response")
            .response,
        "a framed garbage request from a raw client",
    );
    // A length prefix above the limit, with no body.
    let result = raw_exchange(
        &broker,
        "/scrip/vendor-scrip/1",
        u32::MAX.to_be_bytes().to_vec(),
    )
    .await;
    assert!(
        result.is_err(),
        "a 4 GiB length prefix: expected a closed stream, got an answer {result:?}"
    );
    // A prefix promising more than the stream carries.
    let mut short = framed(&random_bytes(100));
    short.truncate(30);
    let result = raw_exchange(&broker, "/scrip/vendor-scrip/1", short).await;
    assert!(
        result.is_err(),
        "a frame cut short: expected a closed stream, got an answer {result:?}"
    );
    // Half a length prefix.
    let result = raw_exchange(&broker, "/scrip/intent/1", vec![0, 0]).await;
    assert!(
        result.is_err(),
        "half a length prefix: expected a closed stream, got an answer {result:?}"
    );
    // Unknown versions and protocols, and the merchant's protocols at the broker.
    for name in [
        "/scrip/vendor-scrip/9",
        "/scrip/info/2",
        "/scrip/vendor-scrip/1.1",
        "/scrip/nonsense/1",
        "/scrip/buy/2",
    ] {
        let result = raw_exchange(&broker, name, framed(&[])).await;
        assert!(
            matches!(result, Err(OutboundFailure::UnsupportedProtocols)),
            "{name} at the broker: expected UnsupportedProtocols, got {result:?}"
        );
    }

    // ---- The same against the merchant --------------------------------------------
    for step in [protocol::BUY, protocol::CATALOG] {
        for len in [0, 3, 300] {
            let what = format!("{len} random bytes on {step} at the merchant");
            let answer =
                merchant_answer(&hostile, &merchant, step.clone(), random_bytes(len)).await;
            assert_merchant_malformed(answer, &what);
        }
    }
    for cut in [1, buy.len() / 2, buy.len() - 1] {
        let what = format!("the first {cut} of {} bytes of a buy", buy.len());
        let answer = merchant_answer(&hostile, &merchant, protocol::BUY, buy[..cut].to_vec()).await;
        assert_merchant_malformed(answer, &what);
    }
    let mut padded = buy.clone();
    padded.push(0);
    assert_merchant_malformed(
        merchant_answer(&hostile, &merchant, protocol::BUY, padded).await,
        "a buy with a trailing byte",
    );
    for (step, message) in [
        (protocol::BUY, encode(&MerchantRequest::Catalog)),
        (protocol::CATALOG, buy.clone()),
    ] {
        let answer = merchant_answer(&hostile, &merchant, step.clone(), message).await;
        assert!(
            matches!(answer, MerchantResponse::Refused(Refusal::InvalidRequest { .. })),
            "a message on the wrong protocol {step} at the merchant: expected Refused(InvalidRequest), got {answer:?}"
        );
    }
    // A broker request sent to the merchant is not a merchant request.
    let answer = merchant_answer(&hostile, &merchant, protocol::BUY, intent.clone()).await;
    assert!(
        matches!(answer, MerchantResponse::Refused(_)),
        "an intent sent to the merchant: expected a refusal, got {answer:?}"
    );
    let result = ask(
        &hostile,
        merchant_peer,
        &merchant_address,
        protocol::BUY,
        vec![0u8; MAX_MESSAGE_LEN + 1],
    )
    .await;
    assert!(
        matches!(result, Err(NetError::Request(_))),
        "an oversized frame to the merchant: expected a failed request, got {result:?}"
    );
    let result = raw_exchange(&merchant, "/scrip/buy/2", u32::MAX.to_be_bytes().to_vec()).await;
    assert!(
        result.is_err(),
        "a 4 GiB length prefix to the merchant: expected a closed stream, got {result:?}"
    );
    for name in [
        "/scrip/buy/1",
        "/scrip/buy/3",
        "/scrip/catalog/0",
        "/scrip/register/1",
    ] {
        let result = raw_exchange(&merchant, name, framed(&[])).await;
        assert!(
            matches!(result, Err(OutboundFailure::UnsupportedProtocols)),
            "{name} at the merchant: expected UnsupportedProtocols, got {result:?}"
        );
    }

    // Every refusal above committed nothing.
    assert_eq!(
        admin.fingerprint().expect("fingerprint"),
        before,
        "hostile requests changed the broker's store"
    );

    // ---- Everyone else is still served ---------------------------------------------
    // An unknown peer reads the broker's info and directory.
    let mut stranger_config = NodeConfig::new(identity::Keypair::generate_ed25519());
    stranger_config.call = vec![protocol::INFO, protocol::MERCHANTS];
    let (stranger, stranger_task) = Node::start(stranger_config, None)
        .await
        .expect("stranger starts");
    let info = ask(
        &stranger,
        broker_peer,
        &broker_address,
        protocol::INFO,
        Vec::new(),
    )
    .await
    .expect("info answered");
    assert_eq!(
        decode::<BrokerInfo>(&info).expect("broker info"),
        broker_info
    );
    let directory = ask(
        &stranger,
        broker_peer,
        &broker_address,
        protocol::MERCHANTS,
        Vec::new(),
    )
    .await
    .expect("directory answered");
    let directory: MerchantDirectory = decode(&directory).expect("merchant directory");
    let directory = directory.expect("the directory is not refused");
    assert_eq!(directory.len(), 1, "directory: {directory:?}");
    assert_eq!(directory[0].merchant, merchant_id);
    assert_eq!(directory[0].name, "tea-shop");

    // The hostile client itself is still served, and none of the cut, padded
    // or misrouted copies spent Mallory's scrip: her purchase goes through.
    let answer = broker_answer(&hostile, &broker, protocol::INTENT, intent).await;
    assert!(
        matches!(
            mallory.handle_broker_response(
                &mut mallory_store,
                purchase.intent.request_id,
                &answer,
                &[]
            ),
            Ok(BrokerOutcome::IntentRecorded)
        ),
        "mallory's intent after the attack: {answer:?}"
    );
    // The fingerprint does see a real step, so its being unchanged above means something.
    assert_ne!(admin.fingerprint().expect("fingerprint"), before);
    let answer = merchant_answer(&hostile, &merchant, protocol::BUY, buy).await;
    let delivered = mallory
        .handle_merchant_response(&mut mallory_store, purchase.buy.request_id, &answer)
        .unwrap_or_else(|e| panic!("mallory's buy after the attack: {e}; {answer:?}"));
    assert_eq!(delivered.content, b"a pot of green tea");

    // A well-behaved customer obtains BrokerScrip and buys.
    let mut alice = tokio::time::timeout(
        Duration::from_secs(10),
        Customer::connect(
            broker_address.clone(),
            WalletKeys::from_seed(&Secret32::random(&mut OsRng)),
            SqliteWalletStore::open_in_memory().expect("wallet store"),
            scrip_node::NetOptions::default(),
        ),
    )
    .await
    .expect("alice connects in time")
    .expect("alice connects");
    let scrip = tokio::time::timeout(
        Duration::from_secs(10),
        alice.obtain_broker_scrip(
            alice_account.number,
            alice_account.pin.clone(),
            amount("20.00"),
        ),
    )
    .await
    .expect("obtain broker scrip in time")
    .expect("alice obtains broker scrip");
    let total = scrip.iter().map(|s| s.value().minor()).sum::<u64>();
    assert_eq!(total, amount("20.00").minor());
    let delivered =
        tokio::time::timeout(Duration::from_secs(10), alice.buy(merchant_id, "tea", None))
            .await
            .expect("buy in time")
            .expect("alice buys tea");
    assert_eq!(delivered.content, b"a pot of green tea");

    // The slow stream was still open all along, so it held none of this up;
    // the broker closes it once its request timeout runs out.
    assert!(
        !slow.is_finished(),
        "the slow stream ended before everyone else was served: {:?}",
        slow.await
    );
    let (result, open_for) = slow.await.expect("slow peer task");
    eprintln!("the broker closed the slow stream after {open_for:?}: {result:?}");
    assert!(
        result.is_err(),
        "a frame trickled in forever: expected a closed stream, got an answer {result:?}"
    );

    hostile.shutdown().await;
    stranger.shutdown().await;
    let _ = hostile_task.await;
    let _ = stranger_task.await;
    merchant_node.shutdown().await;
    broker_node.node.shutdown().await;
    eprintln!("hostile test ran in {:?}", started.elapsed());
}
