//! `scrip bench`: what scrip does per second, each figure beside a baseline
//! measured in the same run, so noisy machines still give honest ratios.
//!
//! Every figure is the median of three rounds of a fixed number of
//! operations. Nothing here asserts a speed; the numbers are reported.

mod chart;
mod curves;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::OsRng;
use scrip_core::store::{MerchantStore, MerchantTx};
use scrip_core::wallet::forget_item;
use scrip_core::{
    Broker, BrokerConfig, BrokerKeys, CatalogItem, Merchant, MerchantConfig, MerchantKeys,
    PinHashing, Wallet, WalletKeys,
};
use scrip_node::broker::{BrokerNode, BrokerService};
use scrip_node::customer::Customer;
use scrip_node::merchant::{MerchantNode, MerchantSetup};
use scrip_node::node::Inbound;
use scrip_node::NetOptions;
use scrip_proto::crypto::{Labelled, Proved, SigningKey};
use scrip_proto::msg::{
    BrokerAnswer, BrokerRequest, BrokerResponse, Buy, MerchantRequest, MerchantResponse, Purchase,
};
use scrip_proto::{
    AccountNumber, Amount, CustId, Pin, PublicKey, RequestId, Scrip, ScripBody, ScripId, ScripKind,
    Secret32, Timestamp,
};
use scrip_store::{BrokerDatabase, BrokerDb};
use scrip_store_postgres::testing::TestSchema;
use scrip_store_sqlite::{SqliteBrokerStore, SqliteMerchantStore, SqliteWalletStore};
use serde_json::json;

use crate::output::{CliError, Report};

/// One measured figure and its baseline.
struct Figure {
    name: &'static str,
    value: f64,
    unit: &'static str,
    baseline_name: &'static str,
    baseline: f64,
    target: &'static str,
}

/// How many rounds each figure and each point of a curve is the median of.
const ROUNDS: usize = 3;

/// The median of [`ROUNDS`] rounds of `run`, each returning a figure.
fn median(mut run: impl FnMut() -> f64) -> f64 {
    middle((0..ROUNDS).map(|_| run()).collect())
}

/// The median of the figures of some rounds.
fn middle(mut rounds: Vec<f64>) -> f64 {
    rounds.sort_by(|a, b| a.total_cmp(b));
    rounds[rounds.len() / 2]
}

/// [`median`] of rounds that can fail: the first failure ends it.
fn median_of(mut run: impl FnMut() -> Result<f64, String>) -> Result<f64, String> {
    let mut failed = None;
    let figure = median(|| {
        if failed.is_some() {
            return f64::NAN;
        }
        run().unwrap_or_else(|error| {
            failed.get_or_insert(error);
            f64::NAN
        })
    });
    failed.map_or(Ok(figure), Err)
}

/// Operations per second of `count` calls of `op`.
fn per_second(count: usize, mut op: impl FnMut(usize)) -> f64 {
    let started = Instant::now();
    for i in 0..count {
        op(i);
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Requests per group commit in the grouped figures: what a node's group
/// holds with this many requests in flight.
const GROUP: usize = 256;

fn amount(text: &str) -> Amount {
    text.parse().expect("the bench's amounts are valid")
}

/// How much work each figure does: `--quick` for a smoke run.
struct Sizes {
    hashes: usize,
    buys_memory: usize,
    buys_durable: usize,
    buys_grouped: usize,
    commits: usize,
    exchanges: usize,
    exchanges_grouped: usize,
    seals: usize,
    verifies: usize,
    records: usize,
    appends: usize,
    round_trips: usize,
    customers: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                hashes: 50_000,
                buys_memory: 8 * GROUP,
                buys_durable: 100,
                buys_grouped: 2 * GROUP,
                commits: 100,
                exchanges: 100,
                exchanges_grouped: 2 * GROUP,
                seals: 200,
                verifies: 1_000,
                records: 512,
                appends: 2_000,
                round_trips: 50,
                customers: 4,
            }
        } else {
            Sizes {
                hashes: 500_000,
                buys_memory: 80 * GROUP,
                buys_durable: 500,
                buys_grouped: 40 * GROUP,
                commits: 500,
                exchanges: 500,
                exchanges_grouped: 8 * GROUP,
                seals: 2_000,
                verifies: 8_000,
                records: 4_096,
                appends: 20_000,
                round_trips: 300,
                customers: 64,
            }
        }
    }
}

/// A merchant and the means to make valid Buy requests for it without a broker.
struct MerchantRig {
    merchant: Merchant,
    licence: scrip_proto::msg::Licence,
    now: Timestamp,
}

impl MerchantRig {
    fn new() -> MerchantRig {
        let keys = MerchantKeys::from_seed(&Secret32::random(&mut OsRng));
        let licence = keys.licence(1);
        let broker = Broker::new(
            BrokerKeys::from_seed(&Secret32::random(&mut OsRng)),
            BrokerConfig::new("EUR".parse().expect("EUR")),
        );
        let catalog = vec![CatalogItem {
            id: "tea".into(),
            title: "Tea".into(),
            price: amount("0.001"),
            content: b"tea".to_vec(),
        }];
        MerchantRig {
            merchant: Merchant::new(keys, broker.info(), MerchantConfig::new("bench"), catalog),
            licence,
            now: scrip_node::now(),
        }
    }

    /// `count` Buy requests, each spending fresh VendorScrip worth 0.01, proved by its owner.
    fn buys(&self, count: usize) -> Vec<Proved<Buy>> {
        (0..count)
            .map(|_| {
                let body = ScripBody {
                    kind: ScripKind::Vendor,
                    issuer: self.merchant.id(),
                    id: ScripId::random(1, &mut OsRng),
                    value: amount("0.01"),
                    currency: "EUR".parse().expect("EUR"),
                    cust_id: CustId::random(&mut OsRng),
                    expiry: self.now.plus_seconds(3600),
                };
                let secret = self.licence.customer_master.customer_secret(&body.cust_id);
                let scrip = Scrip::mint(body, &self.licence.stamping_secret);
                Proved::prove(
                    Buy {
                        request_id: RequestId::random(&mut OsRng),
                        scrip,
                        purchase: Purchase::Item("tea".into()),
                        price: amount("0.001"),
                    },
                    &secret,
                )
            })
            .collect()
    }

    /// Buys per second through `store`, one transaction each.
    fn buy_rate(&self, store: &mut impl MerchantStore, count: usize) -> f64 {
        let buys = self.buys(count);
        per_second(count, |i| {
            self.merchant
                .handle_buy(store, self.now, &mut OsRng, &buys[i])
                .expect("a valid buy is delivered");
        })
    }

    /// Buys per second through `store`, [`GROUP`] to a group commit.
    fn grouped_buy_rate(&self, store: &mut impl MerchantStore, count: usize) -> f64 {
        let buys: Vec<MerchantRequest> = self
            .buys(count)
            .into_iter()
            .map(MerchantRequest::Buy)
            .collect();
        let groups: Vec<_> = buys.chunks(GROUP).collect();
        per_second(groups.len(), |i| {
            let answers = self
                .merchant
                .answer_group(store, self.now, &mut OsRng, groups[i]);
            assert!(answers
                .iter()
                .all(|a| matches!(a, MerchantResponse::ItemDelivered(_))));
        }) * GROUP as f64
    }
}

/// What `scrip bench` measures.
pub struct Options {
    /// A short run, for a smoke test.
    pub quick: bool,
    /// Also measure the growth curves (minutes: the spent set and log grow to 10^7).
    pub curves: bool,
    /// Draw the curves into this PNG file (implies `curves`).
    pub chart: Option<PathBuf>,
    /// Also measure the broker on the PostgreSQL database of this URL, with
    /// 1, 2 and 4 broker processes (in a schema of its own, dropped after).
    pub postgres: Option<String>,
}

pub async fn run(options: Options) -> Result<Report, CliError> {
    let quick = options.quick;
    let sizes = Sizes::new(quick);
    let work = tempfile::tempdir()
        .map_err(|e| CliError::local(format!("cannot make a working directory: {e}")))?;
    let mut figures = Vec::new();
    eprintln!(
        "measuring (median of {ROUNDS} rounds each){} ...",
        if quick { ", quick" } else { "" }
    );

    // Keyed-hash stamps: the work a merchant cannot avoid.
    let rig = MerchantRig::new();
    let body = rig.buys(1).remove(0).body.scrip.body;
    let stamps = median(|| {
        per_second(sizes.hashes, |_| {
            std::hint::black_box(
                rig.licence
                    .stamping_secret
                    .stamp(std::hint::black_box(&body)),
            );
        })
    });
    // As a merchant under load answers: a group of requests, one receipt batch signed.
    let validate_memory = median(|| {
        rig.grouped_buy_rate(
            &mut SqliteMerchantStore::open_in_memory().expect("in-memory store"),
            sizes.buys_memory,
        )
    });
    figures.push(Figure {
        name: "merchant Buy item in process, group commit of 256, one core",
        value: validate_memory,
        unit: "buys/s",
        baseline_name: "keyed-hash stamps/s",
        baseline: stamps,
        target: ">= 1,000,000/s and >= 30% of baseline",
    });

    // Durable: the spent set on disk, one commit per buy, against the store's own commit rate.
    let commit_one = median(|| {
        let mut store = SqliteMerchantStore::open(
            &work
                .path()
                .join(format!("commits-{}.db", rand::random::<u64>())),
        )
        .expect("store");
        per_second(sizes.commits, |_| {
            let mut tx = store.begin().expect("begin");
            tx.mark_spent(&ScripId::random(1, &mut OsRng), Timestamp(0))
                .expect("spend");
            tx.commit().expect("commit");
        })
    });
    let commit_batched = median(|| {
        let mut store = SqliteMerchantStore::open(
            &work
                .path()
                .join(format!("batch-{}.db", rand::random::<u64>())),
        )
        .expect("store");
        let batches = (sizes.commits / 10).max(5);
        per_second(batches, |_| {
            let mut tx = store.begin().expect("begin");
            for _ in 0..1000 {
                tx.mark_spent(&ScripId::random(1, &mut OsRng), Timestamp(0))
                    .expect("spend");
            }
            tx.commit().expect("commit");
        }) * 1000.0
    });
    let validate_durable = median(|| {
        rig.buy_rate(
            &mut SqliteMerchantStore::open(
                &work
                    .path()
                    .join(format!("merchant-{}.db", rand::random::<u64>())),
            )
            .expect("store"),
            sizes.buys_durable,
        )
    });
    figures.push(Figure {
        name: "merchant Buy item, spent set durable on disk, one commit each",
        value: validate_durable,
        unit: "buys/s",
        baseline_name: "store durable commits/s, 1 row",
        baseline: commit_one,
        target: "(reported)",
    });
    let grouped_durable = median(|| {
        rig.grouped_buy_rate(
            &mut SqliteMerchantStore::open(
                &work
                    .path()
                    .join(format!("grouped-{}.db", rand::random::<u64>())),
            )
            .expect("store"),
            sizes.buys_grouped,
        )
    });
    figures.push(Figure {
        name: "merchant Buy item, spent set durable on disk, group commit of 256",
        value: grouped_durable,
        unit: "buys/s",
        baseline_name: "store durable spends/s, 1000 rows per commit",
        baseline: commit_batched,
        target: ">= 100,000/s",
    });
    figures.push(Figure {
        name: "store durable spends/s, 1000 rows per commit",
        value: commit_batched,
        unit: "rows/s",
        baseline_name: "store durable commits/s, 1 row",
        baseline: commit_one,
        target: "(baseline)",
    });

    // The broker: Obtain VendorScrip, durable, one commit each and grouped.
    let broker_db = || {
        work.path()
            .join(format!("broker-{}.db", rand::random::<u64>()))
    };
    let exchanges = median(|| broker_exchange_rate(&broker_db(), sizes.exchanges, 1));
    figures.push(Figure {
        name: "broker Obtain VendorScrip, durable, one commit each",
        value: exchanges,
        unit: "exchanges/s",
        baseline_name: "store durable commits/s, 1 row",
        baseline: commit_one,
        target: "(reported)",
    });
    let grouped_exchanges =
        median(|| broker_exchange_rate(&broker_db(), sizes.exchanges_grouped, GROUP));
    // Each exchange seals one customer secret (an X25519 key agreement):
    // however the store is arranged, the cores cannot seal faster than this.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let seals = median(|| hpke_seal_rate(sizes.seals)) * cores as f64;
    figures.push(Figure {
        name: "broker Obtain VendorScrip, durable, group commit of 256",
        value: grouped_exchanges,
        unit: "exchanges/s",
        baseline_name: "HPKE seals/s on every core (one per exchange: the ceiling)",
        baseline: seals,
        target: ">= 20,000/s on 2 cores",
    });
    let served_exchanges = median(|| broker_service_rate(&broker_db(), sizes.exchanges_grouped));
    figures.push(Figure {
        name: "broker Obtain VendorScrip through the node's handlers, 64 at once, durable",
        value: served_exchanges,
        unit: "exchanges/s",
        baseline_name: "HPKE seals/s on every core (one per exchange: the ceiling)",
        baseline: seals,
        target: ">= 20,000/s on 2 cores",
    });

    // Signatures, and payment records verified and recorded in batches.
    let (single, batched) = signature_rates(sizes.verifies);
    let records = median(|| {
        payment_record_rate(
            &work
                .path()
                .join(format!("records-{}.db", rand::random::<u64>())),
            sizes.records,
        )
    });
    figures.push(Figure {
        name: "Ed25519 verify, single",
        value: single,
        unit: "verifies/s",
        baseline_name: "Ed25519 verify, batched 256",
        baseline: batched,
        target: "(baseline)",
    });
    figures.push(Figure {
        name: "broker payment records verified and recorded, batches of 256, durable",
        value: records,
        unit: "records/s",
        baseline_name: "Ed25519 verify, batched 256",
        baseline: batched,
        target: ">= 50% of batched verify/s",
    });

    // The audit log.
    let hashes = median(|| {
        per_second(sizes.hashes, |i| {
            std::hint::black_box(tlog_tiles::record_hash(&i.to_le_bytes()));
        })
    });
    let appends = median(|| log_append_rate(sizes.appends));
    figures.push(Figure {
        name: "audit log appends, 1000 per transaction, in memory",
        value: appends,
        unit: "appends/s",
        baseline_name: "SHA-256 leaf hashes/s",
        baseline: hashes,
        target: ">= 100,000/s",
    });

    if let Some(url) = &options.postgres {
        eprintln!("the broker on PostgreSQL, 1, 2 and 4 processes ...");
        figures.extend(scaling_figures(work.path(), url, &sizes).map_err(CliError::local)?);
    }

    // The network: loopback libp2p, a broker, a merchant and customers.
    let network = network_figures(work.path(), &sizes)
        .await
        .map_err(CliError::local)?;
    figures.extend(network);

    let mut text = format!(
        "{:<74} {:>14} {:>14} {:>8}  target\n",
        "figure", "value", "baseline", "ratio"
    );
    // Latencies are a few milliseconds: show them to the microsecond.
    let shown = |value: f64, unit: &str| {
        if unit == "ms" {
            format!("{value:.3}")
        } else {
            format!("{value:.0}")
        }
    };
    for f in &figures {
        text.push_str(&format!(
            "{:<74} {:>14} {:>14} {:>7.1}%  {}\n    baseline: {}\n",
            f.name,
            format!("{} {}", shown(f.value, f.unit), f.unit),
            shown(f.baseline, f.unit),
            100.0 * f.value / f.baseline,
            f.target,
            f.baseline_name
        ));
    }
    text.push_str(&format!(
        "machine: {} cores; release build: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        !cfg!(debug_assertions)
    ));
    let mut curves = Vec::new();
    if options.curves || options.chart.is_some() {
        let largest = if quick { 10_000 } else { 10_000_000 };
        eprintln!("growth curves (spent set and log up to {largest}) ...");
        curves.push(
            curves::customers(work.path(), if quick { 5 } else { 20 })
                .await
                .map_err(CliError::local)?,
        );
        curves.push(curves::spent_set(work.path(), largest));
        curves.push(curves::log(work.path(), largest));
        for curve in &curves {
            text.push_str(&format!("\n\n{}", curve.table().trim_end()));
        }
    }
    if let Some(path) = &options.chart {
        chart::draw(&curves, path).map_err(CliError::local)?;
        text.push_str(&format!("\n\nchart: {}", path.display()));
    }
    let rows: Vec<_> = figures
        .iter()
        .map(|f| json!({ "figure": f.name, "value": f.value, "unit": f.unit, "baseline": f.baseline_name, "baseline_value": f.baseline, "ratio": f.value / f.baseline, "target": f.target }))
        .collect();
    Ok(Report::new(
        "bench",
        text,
        json!({ "quick": quick, "figures": rows, "curves": curves, "release": !cfg!(debug_assertions) }),
    ))
}

/// The bench's broker of the key seed `seed`: the rig's, and each worker
/// process's, so that they answer the same requests alike.
fn bench_broker(seed: &Secret32) -> Broker {
    let mut config = BrokerConfig::new("EUR".parse().expect("EUR"));
    config.pin_hashing = PinHashing::FAST_INSECURE;
    Broker::new(BrokerKeys::from_seed(seed), config)
}

/// A broker with a registered merchant and a wallet holding BrokerScrip.
struct BrokerRig {
    seed: Secret32,
    broker: Broker,
    store: BrokerDb,
    merchant: Merchant,
    wallet: Wallet,
    wallet_store: SqliteWalletStore,
    account: AccountNumber,
    pin: Pin,
    now: Timestamp,
}

impl BrokerRig {
    fn new(database: &BrokerDatabase) -> BrokerRig {
        let seed = Secret32::random(&mut OsRng);
        let broker = bench_broker(&seed);
        let mut store = database.open().expect("broker store");
        let now = scrip_node::now();
        let opened = broker
            .open_account(&mut store, now, &mut OsRng, "bench")
            .expect("account");
        broker
            .deposit(&mut store, now, opened.number, amount("1000"))
            .expect("deposit");
        let catalog = vec![CatalogItem {
            id: "tea".into(),
            title: "Tea".into(),
            price: amount("0.001"),
            content: b"tea".to_vec(),
        }];
        let merchant = Merchant::new(
            MerchantKeys::from_seed(&Secret32::random(&mut OsRng)),
            broker.info(),
            MerchantConfig::new("bench"),
            catalog,
        );
        let registration = merchant
            .registration_request(
                &mut OsRng,
                RequestId::random(&mut OsRng),
                opened.number,
                opened.pin.clone(),
            )
            .expect("registration");
        assert!(matches!(
            broker.handle(&mut store, now, &mut OsRng, &registration),
            BrokerResponse::MerchantRegistered(_)
        ));
        let wallet = Wallet::new(
            WalletKeys::from_seed(&Secret32::random(&mut OsRng)),
            broker.info(),
        );
        let mut wallet_store = SqliteWalletStore::open_in_memory().expect("wallet store");
        let pending = wallet
            .obtain_broker_scrip(
                &mut wallet_store,
                &mut OsRng,
                opened.number,
                opened.pin.clone(),
                amount("500"),
            )
            .expect("request");
        let response = broker.handle(
            &mut store,
            now,
            &mut OsRng,
            &scrip_proto::decode(&pending.request).expect("request"),
        );
        wallet
            .handle_broker_response(&mut wallet_store, pending.request_id, &response, &[])
            .expect("BrokerScrip");
        BrokerRig {
            seed,
            broker,
            store,
            merchant,
            wallet,
            wallet_store,
            account: opened.number,
            pin: opened.pin,
            now,
        }
    }

    /// `count` Obtain VendorScrip requests worth 0.01, each spending a
    /// BrokerScrip of its own, obtained now in groups.
    fn exchange_requests(&mut self, count: usize) -> Vec<BrokerRequest> {
        let decode = |pending: &scrip_core::store::PendingRequest| -> BrokerRequest {
            scrip_proto::decode(&pending.request).expect("request")
        };
        let orders: Vec<_> = (0..count)
            .map(|_| {
                self.wallet
                    .obtain_broker_scrip(
                        &mut self.wallet_store,
                        &mut OsRng,
                        self.account,
                        self.pin.clone(),
                        amount("0.02"),
                    )
                    .expect("request")
            })
            .collect();
        for group in orders.chunks(GROUP) {
            let requests: Vec<_> = group.iter().map(decode).collect();
            let answers =
                self.broker
                    .answer_group(&mut self.store, self.now, &mut OsRng, &requests);
            for (pending, answer) in group.iter().zip(answers) {
                self.wallet
                    .handle_broker_response(
                        &mut self.wallet_store,
                        pending.request_id,
                        &answer.response,
                        &[],
                    )
                    .expect("BrokerScrip");
            }
        }
        (0..count)
            .map(|_| {
                let pending = self
                    .wallet
                    .obtain_vendor_scrip(
                        &mut self.wallet_store,
                        &mut OsRng,
                        self.now,
                        self.merchant.id(),
                        amount("0.01"),
                    )
                    .expect("request");
                decode(&pending)
            })
            .collect()
    }

    /// Obtain VendorScrip worth 0.01, spending the change of the last exchange, as a wallet would.
    fn exchange(&mut self) {
        let pending = self
            .wallet
            .obtain_vendor_scrip(
                &mut self.wallet_store,
                &mut OsRng,
                self.now,
                self.merchant.id(),
                amount("0.01"),
            )
            .expect("request");
        let response = self.broker.handle(
            &mut self.store,
            self.now,
            &mut OsRng,
            &scrip_proto::decode(&pending.request).expect("request"),
        );
        self.wallet
            .handle_broker_response(&mut self.wallet_store, pending.request_id, &response, &[])
            .expect("VendorScrip");
    }
}

/// HPKE seals of a customer secret per second, on one core.
fn hpke_seal_rate(count: usize) -> f64 {
    let reply = WalletKeys::from_seed(&Secret32::random(&mut OsRng))
        .reply
        .public_key();
    let secret = Secret32::random(&mut OsRng);
    per_second(count, |_| {
        std::hint::black_box(
            reply
                .seal_value(&mut OsRng, "scrip/bench/seal", b"", &secret)
                .expect("a valid reply key"),
        );
    })
}

/// Obtain VendorScrip per second at a broker on a file, `group` requests to
/// a group commit. Only the broker's work is timed: the wallet prepares every
/// request, each spending its own BrokerScrip, beforehand.
fn broker_exchange_rate(db: &Path, count: usize, group: usize) -> f64 {
    let mut rig = BrokerRig::new(&BrokerDatabase::Sqlite(db.to_owned()));
    let requests = rig.exchange_requests(count);
    let groups: Vec<_> = requests.chunks(group).collect();
    per_second(groups.len(), |i| {
        let answers = rig
            .broker
            .answer_group(&mut rig.store, rig.now, &mut OsRng, groups[i]);
        assert!(answers
            .iter()
            .all(|a| matches!(a.response, BrokerResponse::VendorScripIssued(_))));
    }) * group as f64
}

/// Obtain VendorScrip per second through the broker node's service, as its
/// request handlers run it, without the network: [`HANDLERS`] threads each
/// decode, prepare (seal) and queue requests for group commit, so one
/// group's sealing overlaps the commit of the group before. Timed from a
/// common start to the last answer.
fn broker_service_rate(db: &Path, count: usize) -> f64 {
    const HANDLERS: usize = 64;
    let database = BrokerDatabase::Sqlite(db.to_owned());
    let mut rig = BrokerRig::new(&database);
    let requests = rig.exchange_requests(count);
    // The node's own connections, as `scrip broker run` opens them.
    let service = BrokerService::new(rig.broker, database.pool().expect("broker connections"));
    let start = std::sync::Barrier::new(HANDLERS + 1);
    let began = std::thread::scope(|scope| {
        for share in requests.chunks(count.div_ceil(HANDLERS)) {
            let (service, start) = (&service, &start);
            scope.spawn(move || {
                let inbound: Vec<_> = share
                    .iter()
                    .map(|request| Inbound {
                        peer: libp2p::PeerId::random(),
                        protocol: scrip_node::protocol::for_broker_request(request),
                        request: scrip_proto::encode(request),
                    })
                    .collect();
                start.wait();
                for inbound in inbound {
                    let answer: BrokerAnswer =
                        scrip_proto::decode(&service.handle(inbound)).expect("an answer");
                    assert!(matches!(
                        answer.response,
                        BrokerResponse::VendorScripIssued(_)
                    ));
                }
            });
        }
        // Fewer shares than handlers when `count` is small: the rest just start.
        for _ in requests.chunks(count.div_ceil(HANDLERS)).len()..HANDLERS {
            scope.spawn(|| start.wait());
        }
        start.wait();
        Instant::now()
    });
    count as f64 / began.elapsed().as_secs_f64()
}

/// Obtain VendorScrip per second with `processes` broker processes serving
/// one database at once: this binary run again as `scrip bench-worker`
/// ([`worker`]), each with its own connection and its own group commits of
/// [`GROUP`], `per_process` requests each. The requests are made here
/// beforehand; only the workers' answering is timed, from a common start
/// to the slowest worker's end.
fn broker_processes_rate(
    work: &Path,
    database: &BrokerDatabase,
    processes: usize,
    per_process: usize,
) -> Result<f64, String> {
    let mut rig = BrokerRig::new(database);
    let requests = rig.exchange_requests(processes * per_process);
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the scrip binary: {e}"))?;
    let mut workers = Workers(Vec::new());
    for (i, share) in requests.chunks(per_process).enumerate() {
        let share = WorkerShare {
            now: rig.now.0,
            requests: share.iter().map(scrip_proto::encode).collect(),
        };
        let file = work.join(format!("worker-{i}.requests"));
        let bytes = borsh::to_vec(&share).map_err(|e| format!("cannot encode requests: {e}"))?;
        std::fs::write(&file, bytes)
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        workers.spawn(&exe, &file)?;
        // The seed and the URL (which may hold a password) go by stdin, not argv.
        let database = match database {
            BrokerDatabase::Sqlite(path) => path.display().to_string(),
            BrokerDatabase::Postgres(url) => url.clone(),
        };
        workers.send(
            i,
            &format!("{}\n{database}", hex::encode(rig.seed.expose())),
        )?;
    }
    for i in 0..processes {
        workers.expect(i, "ready")?;
    }
    for i in 0..processes {
        workers.send(i, "go")?;
    }
    let mut slowest = 0.0_f64;
    for i in 0..processes {
        let seconds: f64 = workers
            .expect(i, "elapsed")?
            .parse()
            .map_err(|e| format!("broker worker {i}: a bad elapsed time: {e}"))?;
        slowest = slowest.max(seconds);
    }
    workers.wait()?;
    Ok(requests.len() as f64 / slowest)
}

/// One worker's requests, as the parent hands them over in a file.
#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
struct WorkerShare {
    /// The time the requests were made for, in Unix seconds.
    now: u64,
    /// Obtain VendorScrip requests, each in canonical bytes.
    requests: Vec<Vec<u8>>,
}

/// Running `scrip bench-worker` processes, each talking one line at a time
/// on its stdin and stdout. Dropped before [`Workers::wait`] (the bench
/// failed), it kills them: no worker outlives the bench.
struct Workers(Vec<Worker>);

struct Worker {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Workers {
    fn spawn(&mut self, exe: &Path, requests: &Path) -> Result<(), String> {
        use std::process::{Command, Stdio};
        let mut child = Command::new(exe)
            .arg("bench-worker")
            .arg(requests)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {} bench-worker: {e}", exe.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("both are piped");
        };
        self.0.push(Worker {
            child,
            stdin,
            stdout: std::io::BufReader::new(stdout),
        });
        Ok(())
    }

    fn send(&mut self, i: usize, lines: &str) -> Result<(), String> {
        use std::io::Write;
        let stdin = &mut self.0[i].stdin;
        writeln!(stdin, "{lines}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("broker worker {i} stopped: {e}"))
    }

    /// The rest of worker `i`'s next line, which must begin with `word`.
    fn expect(&mut self, i: usize, word: &str) -> Result<String, String> {
        use std::io::BufRead;
        let worker = &mut self.0[i];
        let mut line = String::new();
        worker
            .stdout
            .read_line(&mut line)
            .map_err(|e| format!("broker worker {i}: {e}"))?;
        match line.trim_end().strip_prefix(word) {
            Some(rest) => Ok(rest.trim().to_owned()),
            // Its stdout closed: it exited, and said why on stderr if it could.
            None if line.is_empty() => Err(format!(
                "broker worker {i} ended ({}) before saying {word:?}",
                worker
                    .child
                    .wait()
                    .map_or_else(|e| e.to_string(), |status| status.to_string())
            )),
            None => Err(format!("broker worker {i} said {line:?}, not {word:?}")),
        }
    }

    /// Waits for every worker to exit, which each does after its elapsed time.
    fn wait(mut self) -> Result<(), String> {
        for (i, worker) in self.0.iter_mut().enumerate() {
            let status = worker
                .child
                .wait()
                .map_err(|e| format!("broker worker {i}: {e}"))?;
            if !status.success() {
                return Err(format!("broker worker {i} failed: {status}"));
            }
        }
        self.0.clear();
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.0 {
            let _ = worker.child.kill();
            let _ = worker.child.wait();
        }
    }
}

/// `scrip bench-worker FILE`: one broker process of
/// [`broker_processes_rate`]. Reads the broker's key seed (hex) and the
/// database from stdin, connects, says `ready`, waits for `go`, answers the
/// requests of FILE in group commits of [`GROUP`], and says `elapsed
/// SECONDS`. Its stdin closing (the bench gone) ends it.
pub fn worker(requests: &Path) -> Result<(), CliError> {
    use std::io::{BufRead, Write};
    let bytes = std::fs::read(requests)
        .map_err(|e| CliError::local(format!("cannot read {}: {e}", requests.display())))?;
    let share: WorkerShare = borsh::from_slice(&bytes).map_err(|e| {
        CliError::local(format!("{}: not a worker's share: {e}", requests.display()))
    })?;
    let requests = share
        .requests
        .iter()
        .map(|bytes| scrip_proto::decode::<BrokerRequest>(bytes))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::local(format!("a request does not decode: {e}")))?;
    let mut stdin = std::io::stdin().lock();
    let mut line = || -> Result<String, CliError> {
        let mut line = String::new();
        match stdin.read_line(&mut line) {
            Ok(0) => Err(CliError::local("the bench closed stdin")),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(e) => Err(CliError::local(format!("cannot read stdin: {e}"))),
        }
    };
    let seed = hex::decode(line()?)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .map(Secret32::from_bytes)
        .ok_or_else(|| CliError::local("the first line is not a key seed in hex"))?;
    let database = BrokerDatabase::parse(&line()?);
    let broker = bench_broker(&seed);
    let mut store = database
        .open()
        .map_err(|e| CliError::local(format!("cannot open {database}: {e}")))?;
    let mut stdout = std::io::stdout().lock();
    let mut say = |text: String| {
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .map_err(|e| CliError::local(format!("cannot write stdout: {e}")))
    };
    say("ready".into())?;
    if line()? != "go" {
        return Err(CliError::local("expected \"go\""));
    }
    let began = Instant::now();
    for group in requests.chunks(GROUP) {
        let answers = broker.answer_group(&mut store, Timestamp(share.now), &mut OsRng, group);
        if let Some(other) = answers
            .iter()
            .find(|a| !matches!(a.response, BrokerResponse::VendorScripIssued(_)))
        {
            return Err(CliError::local(format!(
                "an exchange was not answered with VendorScrip: {:?}",
                other.response
            )));
        }
    }
    say(format!("elapsed {}", began.elapsed().as_secs_f64()))
}

/// The broker on SQLite and on PostgreSQL (the database of `url`, in a
/// schema of its own, dropped afterwards) with 1, 2 and 4 broker processes
/// at once.
fn scaling_figures(work: &Path, url: &str, sizes: &Sizes) -> Result<Vec<Figure>, String> {
    let mut figures = Vec::new();
    for processes in [1, 2, 4] {
        let per_process = sizes.exchanges_grouped / processes;
        let sqlite = median_of(|| {
            let db = work.join(format!("scaling-{}.db", rand::random::<u64>()));
            broker_processes_rate(work, &BrokerDatabase::Sqlite(db), processes, per_process)
        })?;
        let postgres = median_of(|| {
            let schema = TestSchema::new(url)
                .map_err(|e| format!("cannot use the PostgreSQL database: {e}"))?;
            let database = BrokerDatabase::Postgres(schema.url());
            broker_processes_rate(work, &database, processes, per_process)
        })?;
        figures.push(Figure {
            name: match processes {
                1 => "broker Obtain VendorScrip on PostgreSQL, 1 broker process, group commit",
                2 => "broker Obtain VendorScrip on PostgreSQL, 2 broker processes, group commit",
                _ => "broker Obtain VendorScrip on PostgreSQL, 4 broker processes, group commit",
            },
            value: postgres,
            unit: "exchanges/s",
            baseline_name: "the same on SQLite, as many processes on one file",
            baseline: sqlite,
            target: "(reported)",
        });
    }
    Ok(figures)
}

#[derive(borsh::BorshSerialize)]
struct Sample(u64);
impl Labelled for Sample {
    const DOMAIN: &'static str = "scrip/bench/sample";
}

/// Ed25519 verifications per second, one at a time and in batches of 256.
fn signature_rates(count: usize) -> (f64, f64) {
    let key = SigningKey::from_secret(&Secret32::random(&mut OsRng));
    let items: Vec<_> = (0..count as u64)
        .map(|i| {
            (
                scrip_proto::crypto::labelled_bytes(&Sample(i)),
                key.sign(&Sample(i)),
                key.public_key(),
            )
        })
        .collect();
    let single = median(|| {
        per_second(count, |i| {
            key.public_key()
                .verify(&Sample(i as u64), &items[i].1)
                .expect("valid")
        })
    });
    let batched = median(|| {
        per_second(count / 256, |b| {
            PublicKey::verify_batch(&items[b * 256..(b + 1) * 256]).expect("valid")
        }) * 256.0
    });
    (single, batched)
}

/// Payment records per second at a durable broker, in batches of 256: real
/// purchases at a merchant, reported and verified (batch signature, each
/// record's stamp and proof) and credited, as in production.
fn payment_record_rate(db: &Path, count: usize) -> f64 {
    let mut rig = BrokerRig::new(&BrokerDatabase::Sqlite(db.to_owned()));
    let mut merchant_store = SqliteMerchantStore::open_in_memory().expect("store");
    for _ in 0..count {
        rig.exchange();
        let purchase = rig
            .wallet
            .buy(
                &mut rig.wallet_store,
                &mut OsRng,
                rig.now,
                rig.merchant.id(),
                Purchase::Item("tea".into()),
                amount("0.001"),
            )
            .expect("buy");
        let request: scrip_proto::msg::MerchantRequest =
            scrip_proto::decode(&purchase.buy.request).expect("request");
        let response = rig
            .merchant
            .handle(&mut merchant_store, rig.now, &mut OsRng, &request);
        rig.wallet
            .handle_merchant_response(&mut rig.wallet_store, purchase.buy.request_id, &response)
            .and_then(|_| forget_item(&mut rig.wallet_store, purchase.buy.request_id))
            .expect("item");
        rig.wallet
            .cancel_unsent(&mut rig.wallet_store, purchase.intent.request_id)
            .ok();
    }
    let mut batches = Vec::new();
    while let Some(batch) = rig
        .merchant
        .poll_payment_records(&mut merchant_store, 256)
        .expect("poll")
    {
        // Clear the batch from the queue without crediting, so the timed run below records every record once.
        if let BrokerRequest::PaymentRecords(signed) = &batch {
            let mut tx = merchant_store.begin().expect("begin");
            for record in &signed.body.records {
                tx.dequeue_payment_record(&record.buy.body.scrip.id())
                    .expect("dequeue");
            }
            tx.commit().expect("commit");
        }
        batches.push(batch);
    }
    let started = Instant::now();
    for batch in &batches {
        match rig
            .broker
            .handle(&mut rig.store, rig.now, &mut OsRng, batch)
        {
            BrokerResponse::PaymentRecordsAck(_) => {}
            other => panic!("payment records refused: {other:?}"),
        }
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Log appends per second, 1000 to a transaction, on an in-memory broker store.
fn log_append_rate(count: usize) -> f64 {
    let mut store = SqliteBrokerStore::open_in_memory().expect("store");
    let started = Instant::now();
    let mut done = 0;
    while done < count {
        let mut tx = scrip_core::store::BrokerStore::begin(&mut store).expect("begin");
        for i in 0..1000 {
            scrip_core::log::append(&mut tx, &((done + i) as u64).to_le_bytes()).expect("append");
        }
        scrip_core::store::BrokerTx::commit(tx).expect("commit");
        done += 1000;
    }
    done as f64 / started.elapsed().as_secs_f64()
}

/// A broker, a merchant selling tea, and funded customers, on loopback libp2p.
pub(super) struct Loopback {
    broker: BrokerNode,
    merchant: MerchantNode,
    merchant_id: scrip_proto::MerchantId,
    address: libp2p::Multiaddr,
    /// The broker's operator, for opening and funding accounts beside the running broker.
    operator: Broker,
    books: SqliteBrokerStore,
    customers: Vec<Customer>,
    /// Customer accounts opened so far, to name the next.
    opened: usize,
}

impl Loopback {
    pub(super) async fn start(work: &Path) -> Result<Loopback, String> {
        // A directory of its own: a bench run starts more than one.
        let dir = &work.join(format!("net-{}", rand::random::<u64>()));
        std::fs::create_dir(dir).map_err(|e| e.to_string())?;
        let loopback = || vec!["/ip4/127.0.0.1/tcp/0".parse().expect("address")];
        let broker_seed = Secret32::random(&mut OsRng);
        let config = || {
            let mut config = BrokerConfig::new("EUR".parse().expect("EUR"));
            config.pin_hashing = PinHashing::FAST_INSECURE;
            config
        };
        let broker = BrokerNode::start(
            Broker::new(BrokerKeys::from_seed(&broker_seed), config()),
            &BrokerDatabase::Sqlite(dir.join("net-broker.db")),
            loopback(),
            NetOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let address = broker.node.listen_addresses()[0].clone();
        let operator = Broker::new(BrokerKeys::from_seed(&broker_seed), config());
        let mut books =
            SqliteBrokerStore::open(&dir.join("net-broker.db")).map_err(|e| e.to_string())?;
        let shop = operator
            .open_account(&mut books, scrip_node::now(), &mut OsRng, "shop")
            .map_err(|e| e.to_string())?;
        let merchant = MerchantNode::start(
            MerchantSetup {
                keys: MerchantKeys::from_seed(&Secret32::random(&mut OsRng)),
                config: MerchantConfig::new("bench"),
                catalog: vec![CatalogItem {
                    id: "tea".into(),
                    title: "Tea".into(),
                    price: amount("0.001"),
                    content: b"tea".to_vec(),
                }],
                account: shop.number,
                pin: shop.pin,
            },
            &dir.join("net-merchant.db"),
            loopback(),
            address.clone(),
            NetOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let merchant_id = merchant.service.merchant().id();
        Ok(Loopback {
            broker,
            merchant,
            merchant_id,
            address,
            operator,
            books,
            customers: Vec::new(),
            opened: 0,
        })
    }

    /// Adds customers until there are `count`, each with its wallet in memory.
    pub(super) async fn add_customers(&mut self, count: usize) -> Result<(), String> {
        while self.customers.len() < count {
            let store = SqliteWalletStore::open_in_memory().map_err(|e| e.to_string())?;
            let customer = self.new_customer(store).await?;
            self.customers.push(customer);
        }
        Ok(())
    }

    /// A customer of a new account, its wallet in `store`, with VendorScrip
    /// for 2000 purchases.
    pub(super) async fn new_customer(
        &mut self,
        store: SqliteWalletStore,
    ) -> Result<Customer, String> {
        let account = self
            .operator
            .open_account(
                &mut self.books,
                scrip_node::now(),
                &mut OsRng,
                &format!("customer {}", self.opened),
            )
            .map_err(|e| e.to_string())?;
        self.opened += 1;
        self.operator
            .deposit(
                &mut self.books,
                scrip_node::now(),
                account.number,
                amount("10"),
            )
            .map_err(|e| e.to_string())?;
        let mut customer = Customer::connect(
            self.address.clone(),
            WalletKeys::from_seed(&Secret32::random(&mut OsRng)),
            store,
            NetOptions::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
        customer
            .obtain_broker_scrip(account.number, account.pin, amount("5"))
            .await
            .map_err(|e| e.to_string())?;
        customer
            .obtain_vendor_scrip(self.merchant_id, amount("2"))
            .await
            .map_err(|e| e.to_string())?;
        Ok(customer)
    }

    /// Purchases per second with the first `count` customers buying at once,
    /// `each` purchases apiece (the intent to the broker and the buy at once).
    pub(super) async fn buy_rate(&mut self, count: usize, each: usize) -> Result<f64, String> {
        let merchant = self.merchant_id;
        let started = Instant::now();
        let tasks: Vec<_> = self
            .customers
            .drain(..count)
            .map(|mut customer| {
                tokio::spawn(async move {
                    for _ in 0..each {
                        let delivered = customer
                            .buy(merchant, "tea", None)
                            .await
                            .map_err(|e| e.to_string())?;
                        // As `scrip wallet buy` does once the item is written out.
                        forget_item(customer.store(), delivered.request_id)
                            .map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(customer)
                })
            })
            .collect();
        let mut back = Vec::new();
        for task in tasks {
            back.push(task.await.map_err(|e| e.to_string())??);
        }
        let rate = (count * each) as f64 / started.elapsed().as_secs_f64();
        self.customers.splice(0..0, back);
        Ok(rate)
    }

    pub(super) async fn shutdown(self) {
        self.merchant.shutdown().await;
        self.broker.node.shutdown().await;
    }
}

/// How long each of `count` purchases of one customer takes, one at a time.
async fn buy_latencies(
    customer: &mut Customer,
    merchant: scrip_proto::MerchantId,
    count: usize,
) -> Result<Vec<Duration>, String> {
    let mut samples = Vec::with_capacity(count);
    let mut bought = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let delivered = customer
            .buy(merchant, "tea", None)
            .await
            .map_err(|e| e.to_string())?;
        samples.push(started.elapsed());
        bought.push(delivered.request_id);
    }
    // The item is in hand when `buy` returns. The wallet forgets items once
    // the caller has them elsewhere: here, after the timed purchases, since
    // forgetting each at once puts two more pages in the log that the next
    // request's synced commit writes (PERFORMANCE.md, session 11).
    for request in bought {
        forget_item(customer.store(), request).map_err(|e| e.to_string())?;
    }
    Ok(samples)
}

/// Purchases over libp2p on loopback against bare round trips.
async fn network_figures(dir: &Path, sizes: &Sizes) -> Result<Vec<Figure>, String> {
    let mut net = Loopback::start(dir).await?;
    net.add_customers(sizes.customers).await?;
    let merchant_id = net.merchant_id;

    // Latency: one customer, one purchase at a time (intent and buy), against a bare round trip.
    let link = net.customers[0].link().clone();
    let mut bare = Vec::new();
    for _ in 0..sizes.round_trips {
        let started = Instant::now();
        link.directory()
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        bare.push(started.elapsed());
    }
    let mut buys = buy_latencies(&mut net.customers[0], merchant_id, sizes.round_trips).await?;
    // A user's wallet is a file: its purchase waits for the disk once more,
    // to store the request before it is sent.
    let wallet =
        SqliteWalletStore::open(&dir.join("net-customer-wallet.db")).map_err(|e| e.to_string())?;
    let mut on_disk = net.new_customer(wallet).await?;
    let mut buys_on_disk = buy_latencies(&mut on_disk, merchant_id, sizes.round_trips).await?;
    drop(on_disk);
    let percentile = |samples: &mut Vec<Duration>, p: f64| {
        samples.sort();
        samples[((samples.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0
    };
    let (bare_p50, bare_p99) = (percentile(&mut bare, 0.5), percentile(&mut bare, 0.99));
    let (buy_p50, buy_p99) = (percentile(&mut buys, 0.5), percentile(&mut buys, 0.99));
    let on_disk_p50 = percentile(&mut buys_on_disk, 0.5);

    // Throughput: every customer buying at once, against the same number of bare round trips at once.
    let per_customer = (sizes.round_trips / 4).max(5);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..sizes.customers {
        let link = link.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_customer {
                let _ = link.directory().await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let bare_rate = (sizes.customers * per_customer) as f64 / started.elapsed().as_secs_f64();
    let buy_rate = net.buy_rate(sizes.customers, per_customer).await?;
    net.shutdown().await;
    Ok(vec![
        Figure {
            name: "Buy item latency over loopback, intent included, p50 (ms)",
            value: buy_p50,
            unit: "ms",
            baseline_name: "bare request-response round trip p50 (ms)",
            baseline: bare_p50,
            target: "p50 <= 1 ms",
        },
        Figure {
            name: "Buy item latency over loopback, intent included, p99 (ms)",
            value: buy_p99,
            unit: "ms",
            baseline_name: "bare request-response round trip p99 (ms)",
            baseline: bare_p99,
            target: "(reported)",
        },
        Figure {
            name: "Buy item latency, the customer's wallet on disk, p50 (ms)",
            value: on_disk_p50,
            unit: "ms",
            baseline_name: "bare request-response round trip p50 (ms)",
            baseline: bare_p50,
            target: "(reported)",
        },
        Figure {
            name: "purchases over libp2p on loopback, customers at once",
            value: buy_rate,
            unit: "buys/s",
            baseline_name: "bare request-response round trips/s, same concurrency",
            baseline: bare_rate,
            target: ">= 70% of baseline",
        },
    ])
}
