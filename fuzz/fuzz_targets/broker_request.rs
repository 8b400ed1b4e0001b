#![no_main]
//! `Broker::handle_bytes` on any bytes, against a broker with funded accounts,
//! a registered merchant and scrip in circulation. Whatever the input: no
//! panic, a canonical response, a balanced ledger, a refusal changes nothing
//! it does not log, and whatever an input did change passes the audit.

use std::sync::Mutex;

use scrip_core::ledger::LedgerAccount;
use scrip_fuzz::{log_size, rng, round_trip, World};
use scrip_proto::msg::BrokerResponse;

/// The world as built, before any input.
struct Clean {
    world: World,
    fingerprint: String,
    log_size: u64,
    ledger: Vec<(LedgerAccount, i64)>,
}

/// Rebuilt after every input that changed it, so each input meets the same
/// state and a crash replays from its input alone.
static STATE: Mutex<Option<Clean>> = Mutex::new(None);

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut state = STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let clean = state.get_or_insert_with(|| {
        let mut world = World::build();
        let fingerprint = world.sim.broker_store.fingerprint().expect("fingerprint");
        let log_size = log_size(&mut world.sim.broker_store);
        let ledger = world
            .sim
            .broker
            .ledger(&mut world.sim.broker_store)
            .expect("ledger");
        Clean {
            world,
            fingerprint,
            log_size,
            ledger,
        }
    });
    let sim = &mut clean.world.sim;
    let response = sim
        .broker
        .handle_bytes(&mut sim.broker_store, sim.now, &mut rng(), data);
    let response =
        round_trip::<BrokerResponse>(&response).expect("the broker answers with a BrokerResponse");
    sim.assert_conserved();
    let changed = sim.broker_store.fingerprint().expect("fingerprint") != clean.fingerprint;
    let logged = log_size(&mut sim.broker_store) != clean.log_size;
    if let BrokerResponse::Refused(refusal) = &response {
        // A refusal moves nothing. The broker does log misuse (double spends,
        // wrong PINs) and what follows from it; the audit below checks that.
        assert!(
            !changed || logged,
            "the refusal \"{refusal}\" changed the broker's tables"
        );
        let ledger = sim.broker.ledger(&mut sim.broker_store).expect("ledger");
        assert!(
            ledger == clean.ledger,
            "the refusal \"{refusal}\" moved value"
        );
    }
    if changed || logged {
        let report = sim.audit();
        assert!(
            report.clean(),
            "the audit is not clean after this input: {report:?}"
        );
        *state = None;
    }
});
