//! One libp2p node: the swarm, its event loop, and a handle to send it commands.
//!
//! [`Node::start`] builds the swarm (TCP + Noise + Yamux, identify, ping,
//! request-response over [`FrameCodec`], rendezvous as server or client) and
//! spawns its driver. The driver owns the swarm; everything else talks to it
//! through the [`Node`] handle. Inbound requests go to the node's [`Handler`]
//! on a blocking thread (the core and its SQLite store are synchronous), and
//! the driver sends back what the handler returns. The driver ends when every
//! handle is dropped or [`Node::shutdown`] is called.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{behaviour::toggle::Toggle, NetworkBehaviour, SwarmEvent};
use libp2p::{
    identify, identity, noise, ping, rendezvous, tcp, yamux, Multiaddr, PeerId, StreamProtocol,
    Swarm,
};
use tokio::sync::{mpsc, oneshot};

use crate::codec::{FrameCodec, InboundFrame};
use crate::NetError;

/// An inbound request: who sent it, on which protocol, and its bytes.
#[derive(Debug)]
pub struct Inbound {
    pub peer: PeerId,
    pub protocol: StreamProtocol,
    pub request: Vec<u8>,
}

/// Answers inbound requests. Runs on a blocking thread.
pub type Handler = Arc<dyn Fn(Inbound) -> Vec<u8> + Send + Sync>;

/// Calls `$on` with the field and protocol of every step behaviour.
macro_rules! for_each_step {
    ($on:ident) => {
        $on!(info, INFO);
        $on!(merchants, MERCHANTS);
        $on!(broker_scrip, BROKER_SCRIP);
        $on!(vendor_scrip, VENDOR_SCRIP);
        $on!(renew, RENEW);
        $on!(register, REGISTER);
        $on!(intent, INTENT);
        $on!(payment_record, PAYMENT_RECORD);
        $on!(audit, AUDIT);
        $on!(buy, BUY);
        $on!(catalog, CATALOG);
    };
}

impl Behaviour {
    /// The behaviour of one step, if this node enabled it.
    fn step(&mut self, protocol: &StreamProtocol) -> Option<&mut Steps> {
        macro_rules! pick {
            ($field:ident, $name:ident) => {
                if *protocol == crate::protocol::$name {
                    return self.$field.as_mut();
                }
            };
        }
        for_each_step!(pick);
        None
    }
}

/// What kind of node to build.
pub struct NodeConfig {
    pub keypair: identity::Keypair,
    pub listen: Vec<Multiaddr>,
    /// Protocols this node answers; requests on others are refused at negotiation.
    pub serve: Vec<StreamProtocol>,
    /// Protocols this node sends requests on.
    pub call: Vec<StreamProtocol>,
    pub rendezvous_server: bool,
    pub rendezvous_client: bool,
    /// Discover peers on the local network with mDNS (off by default; needs the `mdns` feature).
    pub mdns: bool,
    pub request_timeout: Duration,
    pub max_frame: usize,
    /// How many of one peer's requests the node works on at once. Beyond
    /// that a request is dropped (the peer sees its stream closed and may
    /// retry later), so one peer cannot take every worker and the store's
    /// queue from everyone else.
    pub max_in_flight_per_peer: usize,
    /// How many requests the node works on at once, from all peers together.
    pub max_in_flight: usize,
}

impl NodeConfig {
    pub fn new(keypair: identity::Keypair) -> Self {
        NodeConfig {
            keypair,
            listen: Vec::new(),
            serve: Vec::new(),
            call: Vec::new(),
            rendezvous_server: false,
            rendezvous_client: false,
            mdns: false,
            request_timeout: Duration::from_secs(10),
            max_frame: scrip_proto::encoding::MAX_MESSAGE_LEN,
            // An honest wallet has one request in flight, a merchant a few.
            max_in_flight_per_peer: 64,
            max_in_flight: 1024,
        }
    }
}

type Steps = request_response::Behaviour<FrameCodec>;

/// One request-response behaviour per protocol: request-response treats the
/// protocols of one behaviour as versions of one protocol and picks the first
/// the peer supports, so each step needs a behaviour of its own. A node
/// enables only the steps it serves or calls.
#[derive(NetworkBehaviour)]
struct Behaviour {
    info: Toggle<Steps>,
    merchants: Toggle<Steps>,
    broker_scrip: Toggle<Steps>,
    vendor_scrip: Toggle<Steps>,
    renew: Toggle<Steps>,
    register: Toggle<Steps>,
    intent: Toggle<Steps>,
    payment_record: Toggle<Steps>,
    audit: Toggle<Steps>,
    buy: Toggle<Steps>,
    catalog: Toggle<Steps>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    rendezvous_server: Toggle<rendezvous::server::Behaviour>,
    rendezvous_client: Toggle<rendezvous::client::Behaviour>,
    lan: Toggle<LanDiscovery>,
}

/// mDNS on the local network, when built with the `mdns` feature and asked
/// for; otherwise a behaviour that does nothing.
#[cfg(feature = "mdns")]
type LanDiscovery = libp2p::mdns::tokio::Behaviour;
#[cfg(not(feature = "mdns"))]
type LanDiscovery = libp2p::swarm::dummy::Behaviour;

fn lan_discovery(enabled: bool, local: PeerId) -> Result<Toggle<LanDiscovery>, NetError> {
    if !enabled {
        return Ok(Toggle::from(None));
    }
    #[cfg(feature = "mdns")]
    return libp2p::mdns::tokio::Behaviour::new(libp2p::mdns::Config::default(), local)
        .map(|mdns| Toggle::from(Some(mdns)))
        .map_err(|e| NetError::Setup(format!("mDNS: {e}")));
    #[cfg(not(feature = "mdns"))]
    {
        let _ = local;
        Err(NetError::Setup(
            "this scrip was built without mDNS; rebuild with `--features mdns`".into(),
        ))
    }
}

/// A peer found at the rendezvous point.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub peer: PeerId,
    pub addresses: Vec<Multiaddr>,
}

/// Where an answer to a command goes.
type Reply<T> = oneshot::Sender<Result<T, NetError>>;

enum Command {
    Request {
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        protocol: StreamProtocol,
        request: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Register {
        rendezvous: PeerId,
        address: Multiaddr,
        namespace: String,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Discover {
        rendezvous: PeerId,
        address: Multiaddr,
        namespace: String,
        reply: oneshot::Sender<Result<Vec<Discovered>, NetError>>,
    },
    LanPeers {
        reply: oneshot::Sender<Vec<Discovered>>,
    },
    Shutdown,
}

/// A handle to a running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    listen_addresses: Vec<Multiaddr>,
}

impl Node {
    /// Builds the swarm, starts listening, and spawns the driver. Returns once
    /// every listen address is bound, so [`Node::listen_addresses`] are dialable.
    pub async fn start(
        config: NodeConfig,
        handler: Option<Handler>,
    ) -> Result<(Node, tokio::task::JoinHandle<()>), NetError> {
        let mut swarm = build_swarm(&config)?;
        let peer_id = *swarm.local_peer_id();
        let mut listeners = Vec::new();
        for address in &config.listen {
            listeners.push(
                swarm
                    .listen_on(address.clone())
                    .map_err(|e| NetError::Listen(format!("{address}: {e}")))?,
            );
        }
        let mut listen_addresses = Vec::new();
        while listen_addresses.len() < listeners.len() {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => {
                    swarm.add_external_address(address.clone());
                    listen_addresses.push(address.with(libp2p::multiaddr::Protocol::P2p(peer_id)));
                }
                SwarmEvent::ListenerError { error, .. }
                | SwarmEvent::ListenerClosed {
                    reason: Err(error), ..
                } => return Err(NetError::Listen(error.to_string())),
                _ => {}
            }
        }
        let (commands, receiver) = mpsc::channel(64);
        let driver = Driver {
            swarm,
            handler,
            commands: receiver,
            pending: HashMap::new(),
            registrations: Vec::new(),
            discoveries: Vec::new(),
            lan_peers: HashMap::new(),
            in_flight: Arc::new(InFlight {
                by_peer: Default::default(),
                per_peer: config.max_in_flight_per_peer,
                total: config.max_in_flight,
            }),
        };
        let task = tokio::spawn(driver.run());
        Ok((
            Node {
                commands,
                peer_id,
                listen_addresses,
            },
            task,
        ))
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The full dialable addresses, each ending in `/p2p/<peer id>`.
    pub fn listen_addresses(&self) -> &[Multiaddr] {
        &self.listen_addresses
    }

    /// Sends one request and waits for its response (or the request timeout).
    pub async fn request(
        &self,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        protocol: StreamProtocol,
        request: Vec<u8>,
    ) -> Result<Vec<u8>, NetError> {
        let (reply, response) = oneshot::channel();
        self.send(Command::Request {
            peer,
            addresses,
            protocol,
            request,
            reply,
        })
        .await?;
        response.await.map_err(|_| NetError::Stopped)?
    }

    /// Registers this node's addresses under `namespace` at a rendezvous point.
    pub async fn register(
        &self,
        rendezvous: PeerId,
        address: Multiaddr,
        namespace: &str,
    ) -> Result<(), NetError> {
        let (reply, response) = oneshot::channel();
        self.send(Command::Register {
            rendezvous,
            address,
            namespace: namespace.to_owned(),
            reply,
        })
        .await?;
        within(RENDEZVOUS_TIMEOUT, response).await
    }

    /// The peers registered under `namespace` at a rendezvous point.
    pub async fn discover(
        &self,
        rendezvous: PeerId,
        address: Multiaddr,
        namespace: &str,
    ) -> Result<Vec<Discovered>, NetError> {
        let (reply, response) = oneshot::channel();
        self.send(Command::Discover {
            rendezvous,
            address,
            namespace: namespace.to_owned(),
            reply,
        })
        .await?;
        within(RENDEZVOUS_TIMEOUT, response).await
    }

    /// The peers found by mDNS on the local network so far (none unless `mdns` is on).
    pub async fn lan_peers(&self) -> Result<Vec<Discovered>, NetError> {
        let (reply, response) = oneshot::channel();
        self.send(Command::LanPeers { reply }).await?;
        response.await.map_err(|_| NetError::Stopped)
    }

    /// Stops the driver; in-flight requests fail with [`NetError::Stopped`].
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    async fn send(&self, command: Command) -> Result<(), NetError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| NetError::Stopped)
    }
}

/// A rendezvous answer that never comes (the point is unreachable) must not hang the caller.
const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(10);

async fn within<T>(
    limit: Duration,
    response: oneshot::Receiver<Result<T, NetError>>,
) -> Result<T, NetError> {
    match tokio::time::timeout(limit, response).await {
        Ok(answer) => answer.map_err(|_| NetError::Stopped)?,
        Err(_) => Err(NetError::Timeout(limit.as_secs())),
    }
}

fn build_swarm(config: &NodeConfig) -> Result<Swarm<Behaviour>, NetError> {
    let step = |protocol: StreamProtocol| -> Toggle<Steps> {
        let support = match (
            config.serve.contains(&protocol),
            config.call.contains(&protocol),
        ) {
            (true, true) => ProtocolSupport::Full,
            (true, false) => ProtocolSupport::Inbound,
            (false, true) => ProtocolSupport::Outbound,
            (false, false) => return Toggle::from(None),
        };
        let rr_config = request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(256);
        Toggle::from(Some(request_response::Behaviour::with_codec(
            FrameCodec {
                max_frame: config.max_frame,
            },
            [(protocol, support)],
            rr_config,
        )))
    };
    let builder = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Setup(e.to_string()))?;
    #[cfg(feature = "quic")]
    let builder = builder.with_quic();
    use crate::protocol::*;
    let lan = lan_discovery(config.mdns, config.keypair.public().to_peer_id())?;
    let swarm = builder
        .with_behaviour(|key| Behaviour {
            info: step(INFO),
            merchants: step(MERCHANTS),
            broker_scrip: step(BROKER_SCRIP),
            vendor_scrip: step(VENDOR_SCRIP),
            renew: step(RENEW),
            register: step(REGISTER),
            intent: step(INTENT),
            payment_record: step(PAYMENT_RECORD),
            audit: step(AUDIT),
            buy: step(BUY),
            catalog: step(CATALOG),
            identify: identify::Behaviour::new(identify::Config::new(
                "/scrip/id/1".into(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
            rendezvous_server: Toggle::from(config.rendezvous_server.then(|| {
                rendezvous::server::Behaviour::new(rendezvous::server::Config::default())
            })),
            rendezvous_client: Toggle::from(
                config
                    .rendezvous_client
                    .then(|| rendezvous::client::Behaviour::new(key.clone())),
            ),
            lan,
        })
        .map_err(|e| NetError::Setup(e.to_string()))?
        // Connections to the broker live long: a wallet or merchant talks to it at every step.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    Ok(swarm)
}

/// A response on its way back: the step it answers, the channel, the bytes.
type Outgoing = (StreamProtocol, ResponseChannel<Vec<u8>>, Vec<u8>);

struct Driver {
    swarm: Swarm<Behaviour>,
    handler: Option<Handler>,
    commands: mpsc::Receiver<Command>,
    pending: HashMap<(StreamProtocol, OutboundRequestId), Reply<Vec<u8>>>,
    registrations: Vec<(PeerId, String, Reply<()>)>,
    discoveries: Vec<(PeerId, Reply<Vec<Discovered>>)>,
    /// Peers found by mDNS on the local network.
    lan_peers: HashMap<PeerId, Vec<Multiaddr>>,
    in_flight: Arc<InFlight>,
}

/// Inbound requests being worked on, per peer, within the node's limits.
struct InFlight {
    by_peer: std::sync::Mutex<HashMap<PeerId, usize>>,
    per_peer: usize,
    total: usize,
}

impl InFlight {
    /// Counts a request of `peer` in, or `None` if a limit is reached.
    fn admit(self: &Arc<Self>, peer: PeerId) -> Option<Admitted> {
        let mut by_peer = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = by_peer.values().sum();
        let mine = by_peer.entry(peer).or_default();
        if *mine >= self.per_peer || total >= self.total {
            return None;
        }
        *mine += 1;
        Some(Admitted {
            in_flight: Arc::clone(self),
            peer,
        })
    }
}

/// One admitted request; counted out when dropped, however its handling ends.
struct Admitted {
    in_flight: Arc<InFlight>,
    peer: PeerId,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut by_peer = self
            .in_flight
            .by_peer
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = by_peer.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                by_peer.remove(&self.peer);
            }
        }
    }
}

impl Driver {
    async fn run(mut self) {
        let (responses_tx, mut responses) = mpsc::channel::<Outgoing>(256);
        loop {
            tokio::select! {
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.handle_command(command),
                },
                Some((protocol, channel, response)) = responses.recv() => {
                    if let Some(step) = self.swarm.behaviour_mut().step(&protocol) {
                        // The requester may have gone away meanwhile; nothing more to do then.
                        let _ = step.send_response(channel, response);
                    }
                }
                event = self.swarm.select_next_some() => self.handle_event(event, &responses_tx),
            }
        }
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(NetError::Stopped));
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Request {
                peer,
                addresses,
                protocol,
                request,
                reply,
            } => {
                for address in addresses {
                    self.swarm.add_peer_address(peer, address);
                }
                match self.swarm.behaviour_mut().step(&protocol) {
                    Some(step) => {
                        let id = step.send_request(&peer, (protocol.clone(), request));
                        self.pending.insert((protocol, id), reply);
                    }
                    None => drop(reply.send(Err(NetError::Setup(format!(
                        "this node does not call {protocol}"
                    ))))),
                }
            }
            Command::Register {
                rendezvous,
                address,
                namespace,
                reply,
            } => {
                self.swarm.add_peer_address(rendezvous, address);
                let Some(client) = self.swarm.behaviour_mut().rendezvous_client.as_mut() else {
                    let _ = reply.send(Err(NetError::Setup(
                        "this node is not a rendezvous client".into(),
                    )));
                    return;
                };
                let registered = rendezvous::Namespace::new(namespace.clone())
                    .map_err(|e| NetError::Setup(e.to_string()))
                    .and_then(|ns| {
                        client
                            .register(ns, rendezvous, None)
                            .map_err(|e| NetError::Rendezvous(e.to_string()))
                    });
                match registered {
                    Ok(()) => self.registrations.push((rendezvous, namespace, reply)),
                    Err(error) => drop(reply.send(Err(error))),
                }
            }
            Command::Discover {
                rendezvous,
                address,
                namespace,
                reply,
            } => {
                self.swarm.add_peer_address(rendezvous, address);
                let Some(client) = self.swarm.behaviour_mut().rendezvous_client.as_mut() else {
                    let _ = reply.send(Err(NetError::Setup(
                        "this node is not a rendezvous client".into(),
                    )));
                    return;
                };
                match rendezvous::Namespace::new(namespace) {
                    Ok(ns) => {
                        client.discover(Some(ns), None, None, rendezvous);
                        self.discoveries.push((rendezvous, reply));
                    }
                    Err(e) => drop(reply.send(Err(NetError::Setup(e.to_string())))),
                }
            }
            Command::LanPeers { reply } => {
                let found = self
                    .lan_peers
                    .iter()
                    .map(|(peer, addresses)| Discovered {
                        peer: *peer,
                        addresses: addresses.clone(),
                    })
                    .collect();
                let _ = reply.send(found);
            }
            Command::Shutdown => {}
        }
    }

    fn handle_event(
        &mut self,
        event: SwarmEvent<BehaviourEvent>,
        responses: &mpsc::Sender<Outgoing>,
    ) {
        let event = match event {
            SwarmEvent::Behaviour(event) => match split_step_event(event) {
                Ok((protocol, event)) => {
                    return self.handle_request_response(protocol, event, responses)
                }
                Err(other) => SwarmEvent::Behaviour(other),
            },
            other => other,
        };
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::RendezvousClient(event)) => {
                self.handle_rendezvous(event)
            }
            #[cfg(feature = "mdns")]
            SwarmEvent::Behaviour(BehaviourEvent::Lan(libp2p::mdns::Event::Discovered(found))) => {
                for (peer, address) in found {
                    self.swarm.add_peer_address(peer, address.clone());
                    self.lan_peers.entry(peer).or_default().push(address);
                }
            }
            #[cfg(feature = "mdns")]
            SwarmEvent::Behaviour(BehaviourEvent::Lan(libp2p::mdns::Event::Expired(gone))) => {
                for (peer, address) in gone {
                    if let Some(addresses) = self.lan_peers.get_mut(&peer) {
                        addresses.retain(|a| *a != address);
                    }
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!(%error, "incoming connection failed")
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed")
            }
            _ => {}
        }
    }

    fn handle_request_response(
        &mut self,
        step: StreamProtocol,
        event: request_response::Event<InboundFrame, Vec<u8>>,
        responses: &mpsc::Sender<Outgoing>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request: (protocol, request),
                    channel,
                    ..
                } => {
                    let Some(handler) = self.handler.clone() else {
                        return;
                    };
                    let Some(admitted) = self.in_flight.admit(peer) else {
                        // Dropping the channel closes the peer's stream.
                        tracing::debug!(%peer, "too many requests in flight; dropped one");
                        return;
                    };
                    let responses = responses.clone();
                    // The answer goes from the handler's thread straight to
                    // the driver, with no task in between to wake.
                    tokio::task::spawn_blocking(move || {
                        let _admitted = admitted;
                        let inbound = Inbound {
                            peer,
                            protocol,
                            request,
                        };
                        match std::panic::catch_unwind(AssertUnwindSafe(|| handler(inbound))) {
                            Ok(response) => {
                                drop(responses.blocking_send((step, channel, response)))
                            }
                            // A panicking handler closes the stream; the node keeps serving.
                            Err(_) => tracing::error!("request handler panicked"),
                        }
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending.remove(&(step, request_id)) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                tracing::debug!(%peer, %error, "request failed");
                if let Some(reply) = self.pending.remove(&(step, request_id)) {
                    let _ = reply.send(Err(NetError::Request(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed")
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn handle_rendezvous(&mut self, event: rendezvous::client::Event) {
        match event {
            rendezvous::client::Event::Registered {
                rendezvous_node,
                namespace,
                ..
            } => {
                self.answer_registration(rendezvous_node, namespace.to_string(), Ok(()));
            }
            rendezvous::client::Event::RegisterFailed {
                rendezvous_node,
                namespace,
                error,
            } => {
                self.answer_registration(
                    rendezvous_node,
                    namespace.to_string(),
                    Err(NetError::Rendezvous(format!("{error:?}"))),
                );
            }
            rendezvous::client::Event::Discovered {
                rendezvous_node,
                registrations,
                ..
            } => {
                let found = registrations
                    .into_iter()
                    .map(|r| Discovered {
                        peer: r.record.peer_id(),
                        addresses: r.record.addresses().to_vec(),
                    })
                    .collect::<Vec<_>>();
                self.answer_discovery(rendezvous_node, Ok(found));
            }
            rendezvous::client::Event::DiscoverFailed {
                rendezvous_node,
                error,
                ..
            } => {
                self.answer_discovery(
                    rendezvous_node,
                    Err(NetError::Rendezvous(format!("{error:?}"))),
                );
            }
            rendezvous::client::Event::Expired { .. } => {}
        }
    }

    fn answer_registration(
        &mut self,
        rendezvous: PeerId,
        namespace: String,
        result: Result<(), NetError>,
    ) {
        if let Some(i) = self
            .registrations
            .iter()
            .position(|(r, n, _)| *r == rendezvous && *n == namespace)
        {
            let (_, _, reply) = self.registrations.swap_remove(i);
            let _ = reply.send(result);
        }
    }

    fn answer_discovery(&mut self, rendezvous: PeerId, result: Result<Vec<Discovered>, NetError>) {
        if let Some(i) = self.discoveries.iter().position(|(r, _)| *r == rendezvous) {
            let (_, reply) = self.discoveries.remove(i);
            let _ = reply.send(result);
        }
    }
}

/// Splits a step's event off the behaviour's events, naming its protocol.
// The event is moved once per swarm event; boxing it would only add an allocation.
#[allow(clippy::result_large_err)]
fn split_step_event(
    event: BehaviourEvent,
) -> Result<
    (
        StreamProtocol,
        request_response::Event<InboundFrame, Vec<u8>>,
    ),
    BehaviourEvent,
> {
    use crate::protocol::*;
    Ok(match event {
        BehaviourEvent::Info(e) => (INFO, e),
        BehaviourEvent::Merchants(e) => (MERCHANTS, e),
        BehaviourEvent::BrokerScrip(e) => (BROKER_SCRIP, e),
        BehaviourEvent::VendorScrip(e) => (VENDOR_SCRIP, e),
        BehaviourEvent::Renew(e) => (RENEW, e),
        BehaviourEvent::Register(e) => (REGISTER, e),
        BehaviourEvent::Intent(e) => (INTENT, e),
        BehaviourEvent::PaymentRecord(e) => (PAYMENT_RECORD, e),
        BehaviourEvent::Audit(e) => (AUDIT, e),
        BehaviourEvent::Buy(e) => (BUY, e),
        BehaviourEvent::Catalog(e) => (CATALOG, e),
        other => return Err(other),
    })
}
