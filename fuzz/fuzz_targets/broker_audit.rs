#![no_main]
//! `Broker::handle_audit` on any request: it reads only, answers every
//! question about the log it holds, and every proof and checkpoint it serves
//! checks against the log's own roots and the broker's key.

use std::sync::{LazyLock, Mutex};

use scrip_core::log::{check_consistency, check_inclusion, leaf_hash, verify_checkpoint};
use scrip_core::store::{BrokerStore, BrokerTx};
use scrip_fuzz::{log_size, round_trip, World};
use scrip_proto::msg::{AuditRequest, AuditResponse};

fn root(tx: &mut impl BrokerTx, size: u64) -> [u8; 32] {
    scrip_core::log::root(tx, size).expect("root")
}

static WORLD: LazyLock<Mutex<World>> = LazyLock::new(|| Mutex::new(World::build()));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some(request) = round_trip::<AuditRequest>(data) else {
        return;
    };
    let mut world = WORLD
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let sim = &mut world.sim;
    let broker = sim.broker.info().broker;
    let store = &mut sim.broker_store;
    let fingerprint = store.fingerprint().expect("fingerprint");
    let size = log_size(store);
    let response = sim.broker.handle_audit(store, &request);
    assert_eq!(
        store.fingerprint().expect("fingerprint"),
        fingerprint,
        "an audit question changed the store"
    );
    assert_eq!(log_size(store), size, "an audit question grew the log");
    let mut tx = store.begin().expect("broker transaction");
    match (request, response) {
        (AuditRequest::Checkpoint, AuditResponse::Checkpoint(note)) => {
            let checkpoint =
                verify_checkpoint(&broker, &note).expect("the broker's checkpoint verifies");
            assert_eq!(
                (checkpoint.size, checkpoint.root),
                (size, root(&mut tx, size))
            );
        }
        (
            AuditRequest::Inclusion {
                leaf_index,
                tree_size,
            },
            AuditResponse::Proof(proof),
        ) => {
            let tree_root = root(&mut tx, tree_size);
            let leaf = leaf_hash(&mut tx, leaf_index).expect("leaf hash");
            assert!(
                check_inclusion(&proof, tree_size, tree_root, leaf_index, leaf),
                "a bad inclusion proof"
            );
        }
        (AuditRequest::Consistency { old_size, new_size }, AuditResponse::Proof(proof)) => {
            let (new_root, old_root) = (root(&mut tx, new_size), root(&mut tx, old_size));
            assert!(
                check_consistency(&proof, new_size, new_root, old_size, old_root),
                "a bad consistency proof"
            );
        }
        (request, AuditResponse::Refused(refusal)) => {
            let answerable = match request {
                AuditRequest::Checkpoint => size > 0,
                AuditRequest::Inclusion {
                    leaf_index,
                    tree_size,
                } => leaf_index < tree_size && tree_size <= size,
                AuditRequest::Consistency { old_size, new_size } => {
                    1 <= old_size && old_size <= new_size && new_size <= size
                }
            };
            assert!(
                !answerable,
                "{request:?} on a log of {size} refused: {refusal}"
            );
        }
        (request, response) => panic!("{request:?} answered with {response:?}"),
    }
});
