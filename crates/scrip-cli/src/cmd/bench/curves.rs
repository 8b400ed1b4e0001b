//! Growth curves: how throughput holds up as customers, the spent set and the
//! audit log grow. Printed as tables; drawn as a PNG by [`super::chart`].
//! Each rate is the median of [`ROUNDS`] rounds, as the figures are; a point's
//! x is the size when its first round starts.

use std::path::Path;
use std::time::Instant;

use rand::rngs::OsRng;
use scrip_core::store::{BrokerStore, BrokerTx, MerchantStore, MerchantTx};
use scrip_proto::{ScripId, Timestamp};
use scrip_store_sqlite::{SqliteBrokerStore, SqliteMerchantStore};

use super::{median, middle, Loopback, MerchantRig, GROUP, ROUNDS};

/// Concurrent customers measured, as the issue asks.
pub const CUSTOMERS: [usize; 5] = [1, 4, 16, 64, 256];

/// One point of a curve: the x value and what was measured there.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    pub x: u64,
    pub values: Vec<f64>,
}

/// A measured curve: what x is, and the name and unit of each value.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Curve {
    pub title: &'static str,
    pub x: &'static str,
    pub series: Vec<&'static str>,
    pub points: Vec<Point>,
}

impl Curve {
    pub fn table(&self) -> String {
        let mut text = format!("{}\n{:>12}", self.title, self.x);
        for name in &self.series {
            text.push_str(&format!(" {name:>28}"));
        }
        text.push('\n');
        for point in &self.points {
            text.push_str(&format!("{:>12}", point.x));
            for value in &point.values {
                text.push_str(&format!(" {value:>28.1}"));
            }
            text.push('\n');
        }
        text
    }
}

/// The sizes 10^3, 10^4, ... up to `largest`.
pub fn sizes(largest: u64) -> Vec<u64> {
    std::iter::successors(Some(1_000u64), |n| n.checked_mul(10))
        .take_while(|n| *n <= largest)
        .collect()
}

/// Purchases per second over libp2p with 1 to 256 customers buying at once.
pub async fn customers(dir: &Path, each: usize) -> Result<Curve, String> {
    let mut net = Loopback::start(dir).await?;
    let mut points = Vec::new();
    for count in CUSTOMERS {
        net.add_customers(count).await?;
        let mut rounds = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            rounds.push(net.buy_rate(count, each).await?);
        }
        let rate = middle(rounds);
        eprintln!("  {count} customers: {rate:.0} buys/s");
        points.push(Point {
            x: count as u64,
            values: vec![rate],
        });
    }
    net.shutdown().await;
    Ok(Curve {
        title: "purchases over libp2p on loopback against concurrent customers",
        x: "customers",
        series: vec!["buys/s"],
        points,
    })
}

/// A merchant's grouped, durable Buy item rate as its spent set grows to
/// `largest` ids, with the disk and resident memory the set takes per id.
pub fn spent_set(dir: &Path, largest: u64) -> Curve {
    let rig = MerchantRig::new();
    let path = dir.join("curve-merchant.db");
    let mut store = SqliteMerchantStore::open(&path).expect("merchant store");
    let resident_before = resident_bytes();
    let mut filled = 0u64;
    let mut points = Vec::new();
    for size in sizes(largest) {
        // Ids of scrip already spent, 10,000 to a transaction, as buys would leave them.
        while filled < size {
            let batch = (size - filled).min(10_000);
            let mut tx = store.begin().expect("begin");
            for _ in 0..batch {
                tx.mark_spent(&ScripId::random(1, &mut OsRng), Timestamp(u64::MAX >> 1))
                    .expect("spend");
            }
            tx.commit().expect("commit");
            filled += batch;
        }
        let rate = median(|| rig.grouped_buy_rate(&mut store, 8 * GROUP));
        filled += (ROUNDS * 8 * GROUP) as u64;
        let disk = file_bytes(&path) as f64 / filled as f64;
        let resident = resident_bytes().saturating_sub(resident_before) as f64 / filled as f64;
        eprintln!("  spent set of {size}: {rate:.0} buys/s, {disk:.1} B/id on disk, {resident:.1} B/id resident");
        points.push(Point {
            x: size,
            values: vec![rate, disk, resident],
        });
    }
    Curve {
        title: "merchant Buy item (durable, group commit of 256) against the spent set's size",
        x: "spent ids",
        series: vec!["buys/s", "disk bytes per id", "resident bytes per id"],
        points,
    }
}

/// Audit-log appends and inclusion proofs per second as the log grows to `largest` leaves.
pub fn log(dir: &Path, largest: u64) -> Curve {
    // The rounds of appends at one point grow the log by 9,000 leaves in
    // all, so the point at 10^3 leaves the log at 10^4, the next point's size.
    const APPENDS: u64 = 3_000;
    const PROOFS: u64 = 1_000;
    let mut store = SqliteBrokerStore::open(&dir.join("curve-log.db")).expect("broker store");
    let mut points = Vec::new();
    for target in sizes(largest) {
        let size = store
            .begin()
            .and_then(|mut tx| tx.log_size())
            .expect("size");
        append_leaves(&mut store, target.saturating_sub(size));
        let size = size.max(target);
        // Proofs first: they leave the log at the point's size.
        let mut tx = store.begin().expect("begin");
        let proofs = median(|| {
            let started = Instant::now();
            for _ in 0..PROOFS {
                let leaf = rand::random::<u64>() % size;
                std::hint::black_box(
                    scrip_core::log::prove_inclusion(&mut tx, size, leaf).expect("proof"),
                );
            }
            PROOFS as f64 / started.elapsed().as_secs_f64()
        });
        drop(tx);
        let appends = median(|| {
            let started = Instant::now();
            append_leaves(&mut store, APPENDS);
            APPENDS as f64 / started.elapsed().as_secs_f64()
        });
        eprintln!("  log of {size}: {appends:.0} appends/s, {proofs:.0} proofs/s");
        points.push(Point {
            x: size,
            values: vec![appends, proofs],
        });
    }
    Curve {
        title: "audit log (durable, 3,000 appends per commit) against its size",
        x: "leaves",
        series: vec!["appends/s", "inclusion proofs/s"],
        points,
    }
}

/// Appends `count` leaves, 10,000 to a transaction.
fn append_leaves(store: &mut SqliteBrokerStore, count: u64) {
    let mut done = 0;
    while done < count {
        let mut tx = store.begin().expect("begin");
        for _ in 0..(count - done).min(10_000) {
            let index = tx.log_size().expect("size");
            scrip_core::log::append(&mut tx, &index.to_le_bytes()).expect("append");
            done += 1;
        }
        tx.commit().expect("commit");
    }
}

fn file_bytes(path: &Path) -> u64 {
    // The WAL holds pages not yet checkpointed into the main file.
    let wal = path.with_extension("db-wal");
    [path, wal.as_path()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// The process's resident memory, from /proc (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
