//! A simulation of a whole scrip deployment in one process, for tests.
//!
//! [`Sim`] holds one broker, any number of merchants and wallets, each with
//! its own store, one clock and one seeded random generator, so one seed
//! replays a whole run. Messages travel between them as canonical bytes,
//! exactly as the network will carry them.
//!
//! The broker's store is on either [`Backend`]: the broker's tests run on
//! SQLite and, when `SCRIP_TEST_POSTGRES_URL` names a PostgreSQL database,
//! again on PostgreSQL ([`on_each_backend!`]).

use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use scrip_core::broker::OpenedAccount;
use scrip_core::ledger::LedgerAccount;
use scrip_core::merchant::Settlement;
use scrip_core::store::PendingRequest;
use scrip_core::wallet::{BrokerOutcome, Delivered, PendingPurchase};
use scrip_core::{
    Broker, BrokerConfig, BrokerKeys, CatalogItem, Merchant, MerchantConfig, MerchantKeys,
    PinHashing, Wallet, WalletError, WalletKeys,
};
use scrip_proto::msg::{
    BrokerRequest, BrokerResponse, MerchantRequest, MerchantResponse, Purchase,
};
use scrip_proto::{
    decode, encode, AccountNumber, Amount, MerchantId, Pin, RequestId, Scrip, Secret32, Timestamp,
};
use scrip_store::{BrokerDatabase, BrokerDb};
use scrip_store_postgres::testing::{skipped, TestSchema};
use scrip_store_sqlite::{SqliteBrokerStore, SqliteMerchantStore, SqliteWalletStore};

pub use rand;
pub use scrip_core;
pub use scrip_proto;

/// A store fingerprint (`fingerprint()` of a SQLite store) without the
/// section of `table`: for a refusal that changes that table on purpose (a
/// wrong PIN counts in `pin_failures`), so the rest is still compared whole.
pub fn without_table(fingerprint: &str, table: &str) -> String {
    let header = format!("[{table}]");
    let mut skipping = false;
    let mut kept = String::new();
    // Rows are Debug-formatted values, so only a table's header starts with '['.
    for line in fingerprint.split_inclusive('\n') {
        if line.starts_with('[') {
            skipping = line.trim_end() == header;
        }
        if !skipping {
            kept.push_str(line);
        }
    }
    kept
}

/// `"1.25"` as an [`Amount`]; panics on a typo in a test.
pub fn amount(text: &str) -> Amount {
    text.parse()
        .unwrap_or_else(|e| panic!("test amount {text:?}: {e}"))
}

/// Where a test broker keeps its state.
pub enum Backend {
    /// SQLite in memory: the fastest, but only one connection can see it.
    SqliteMemory,
    /// An SQLite file in a temporary directory, for tests that connect twice.
    SqliteFile(tempfile::TempDir),
    /// A fresh schema in the PostgreSQL database of `SCRIP_TEST_POSTGRES_URL`,
    /// dropped when the backend is.
    Postgres(TestSchema),
}

impl Backend {
    /// PostgreSQL, if `SCRIP_TEST_POSTGRES_URL` is set; else `None`, and the
    /// test binary says once that its PostgreSQL tests were skipped.
    pub fn postgres() -> Option<Backend> {
        let Some(url) = scrip_store_postgres::testing::test_url() else {
            skipped();
            return None;
        };
        Some(Backend::Postgres(
            TestSchema::new(&url).expect("a fresh schema in SCRIP_TEST_POSTGRES_URL"),
        ))
    }

    /// This backend, or a file instead of memory: one that can be connected
    /// to again, as a restarted or second broker process would.
    pub fn durable(self) -> Backend {
        match self {
            Backend::SqliteMemory => Backend::SqliteFile(tempfile::tempdir().expect("temp dir")),
            durable => durable,
        }
    }

    /// Where the store is, if it can be connected to again.
    pub fn database(&self) -> Option<BrokerDatabase> {
        match self {
            Backend::SqliteMemory => None,
            Backend::SqliteFile(dir) => Some(BrokerDatabase::Sqlite(dir.path().join("broker.db"))),
            Backend::Postgres(schema) => Some(BrokerDatabase::Postgres(schema.url())),
        }
    }

    /// A new connection to the store: for memory, a new empty database.
    pub fn connect(&self) -> BrokerDb {
        match self.database() {
            Some(database) => database.open().expect("broker store"),
            None => BrokerDb::Sqlite(
                SqliteBrokerStore::open_in_memory().expect("in-memory broker store"),
            ),
        }
    }
}

/// Runs each named test, a function taking a [`Backend`], once on SQLite
/// (in memory) and once on PostgreSQL when `SCRIP_TEST_POSTGRES_URL` is set:
/// as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $test() {
                super::$test($crate::Backend::SqliteMemory)
            })+
        }
        mod postgres {
            $(#[test]
            fn $test() {
                if let Some(backend) = $crate::Backend::postgres() {
                    super::$test(backend)
                }
            })+
        }
    };
}

pub struct SimMerchant {
    pub merchant: Merchant,
    /// The merchant's key seed, so tests can act as a dishonest merchant.
    pub seed: Secret32,
    pub store: SqliteMerchantStore,
}

pub struct SimWallet {
    pub wallet: Wallet,
    pub store: SqliteWalletStore,
}

/// One broker, its merchants and wallets, on one clock.
pub struct Sim {
    pub now: Timestamp,
    pub rng: ChaCha20Rng,
    pub broker: Broker,
    /// The broker's key seed, so tests can restart or reconfigure the broker.
    pub broker_seed: Secret32,
    pub broker_store: BrokerDb,
    pub merchants: Vec<SimMerchant>,
    pub wallets: Vec<SimWallet>,
    /// Keeps the broker's database (a temporary file or schema) for the run.
    pub backend: Backend,
}

impl Sim {
    /// A broker in EUR with in-memory stores and cheap PIN hashing.
    pub fn new(seed: u64) -> Sim {
        Sim::on(Backend::SqliteMemory, seed)
    }

    /// The same, with the broker's store on `backend`.
    pub fn on(backend: Backend, seed: u64) -> Sim {
        let broker_store = backend.connect();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut config = BrokerConfig::new("EUR".parse().unwrap());
        config.pin_hashing = PinHashing::FAST_INSECURE;
        let broker_seed = Secret32::random(&mut rng);
        let broker = Broker::new(BrokerKeys::from_seed(&broker_seed), config);
        Sim {
            now: Timestamp(1_800_000_000),
            rng,
            broker,
            broker_seed,
            broker_store,
            merchants: Vec::new(),
            wallets: Vec::new(),
            backend,
        }
    }

    /// Another connection to the broker's store: a restarted or a second
    /// broker process. Needs a [`Backend::durable`] backend.
    pub fn connect_broker_store(&self) -> BrokerDb {
        assert!(
            self.backend.database().is_some(),
            "an in-memory store cannot be connected to twice: use Backend::durable"
        );
        self.backend.connect()
    }

    /// Replaces the broker with a new one of the same keys and the
    /// configuration `change` makes of the current one: a broker restarted
    /// with another configuration. Its state is all in the store.
    pub fn restart_broker(&mut self, change: impl FnOnce(&mut BrokerConfig)) {
        let mut config = self.broker.config().clone();
        change(&mut config);
        self.broker = Broker::new(BrokerKeys::from_seed(&self.broker_seed), config);
    }

    pub fn advance(&mut self, seconds: u64) {
        self.now = self.now.plus_seconds(seconds);
    }

    // ---- Operator -----------------------------------------------------------

    /// Opens an account and deposits `deposit` into it.
    pub fn open_account(&mut self, name: &str, deposit: &str) -> OpenedAccount {
        let opened = self
            .broker
            .open_account(&mut self.broker_store, self.now, &mut self.rng, name)
            .expect("open account");
        if !amount(deposit).is_zero() {
            self.broker
                .deposit(
                    &mut self.broker_store,
                    self.now,
                    opened.number,
                    amount(deposit),
                )
                .expect("deposit");
        }
        opened
    }

    /// A customer account's balance at the broker.
    pub fn balance(&mut self, account: AccountNumber) -> Amount {
        self.ledger_balance(LedgerAccount::Customer(account))
            .try_into()
            .ok()
            .and_then(Amount::from_minor)
            .expect("non-negative balance")
    }

    pub fn ledger_balance(&mut self, account: LedgerAccount) -> i64 {
        let ledger = self.broker.ledger(&mut self.broker_store).expect("ledger");
        ledger
            .into_iter()
            .find(|(a, _)| *a == account)
            .map(|(_, b)| b)
            .unwrap_or(0)
    }

    // ---- Peers --------------------------------------------------------------

    /// Adds a merchant selling `items` (id, price), registered with the given account.
    pub fn add_merchant(
        &mut self,
        name: &str,
        items: &[(&str, &str)],
        account: &OpenedAccount,
    ) -> usize {
        self.add_merchant_with_store(
            name,
            items,
            account,
            SqliteMerchantStore::open_in_memory().expect("merchant store"),
        )
    }

    /// As [`Sim::add_merchant`], with the merchant's store given (a file, for tests that reopen or share it).
    pub fn add_merchant_with_store(
        &mut self,
        name: &str,
        items: &[(&str, &str)],
        account: &OpenedAccount,
        store: SqliteMerchantStore,
    ) -> usize {
        let seed = Secret32::random(&mut self.rng);
        let keys = MerchantKeys::from_seed(&seed);
        let catalog = items
            .iter()
            .map(|(id, price)| CatalogItem {
                id: id.to_string(),
                title: format!("The {id}"),
                price: amount(price),
                content: format!("content of {id}").into_bytes(),
            })
            .collect();
        let merchant = Merchant::new(keys, self.broker.info(), MerchantConfig::new(name), catalog);
        let request_id = RequestId::random(&mut self.rng);
        let request = merchant
            .registration_request(
                &mut self.rng,
                request_id,
                account.number,
                account.pin.clone(),
            )
            .expect("registration request");
        match self.broker_call(&request) {
            BrokerResponse::MerchantRegistered(_) => {}
            other => panic!("registration of {name} failed: {other:?}"),
        }
        self.merchants.push(SimMerchant {
            merchant,
            seed,
            store,
        });
        self.merchants.len() - 1
    }

    pub fn add_wallet(&mut self) -> usize {
        self.add_wallet_with_store(SqliteWalletStore::open_in_memory().expect("wallet store"))
    }

    /// A wallet on a store of the test's choosing, such as a file.
    pub fn add_wallet_with_store(&mut self, store: SqliteWalletStore) -> usize {
        let wallet = Wallet::new(
            WalletKeys::from_seed(&Secret32::random(&mut self.rng)),
            self.broker.info(),
        );
        self.wallets.push(SimWallet { wallet, store });
        self.wallets.len() - 1
    }

    pub fn merchant_id(&self, merchant: usize) -> MerchantId {
        self.merchants[merchant].merchant.id()
    }

    // ---- Transport ----------------------------------------------------------

    /// Sends a request to the broker as bytes and decodes the answer.
    pub fn broker_call(&mut self, request: &BrokerRequest) -> BrokerResponse {
        self.broker_bytes(&encode(request))
    }

    pub fn broker_bytes(&mut self, request: &[u8]) -> BrokerResponse {
        let response =
            self.broker
                .handle_bytes(&mut self.broker_store, self.now, &mut self.rng, request);
        decode(&response).expect("the broker answers with a canonical response")
    }

    pub fn merchant_bytes(&mut self, merchant: usize, request: &[u8]) -> MerchantResponse {
        let m = &mut self.merchants[merchant];
        let response = m
            .merchant
            .handle_bytes(&mut m.store, self.now, &mut self.rng, request);
        decode(&response).expect("the merchant answers with a canonical response")
    }

    pub fn merchant_call(
        &mut self,
        merchant: usize,
        request: &MerchantRequest,
    ) -> MerchantResponse {
        self.merchant_bytes(merchant, &encode(request))
    }

    /// Sends a pending broker request and hands the answer to the wallet.
    pub fn send_to_broker(
        &mut self,
        wallet: usize,
        pending: &PendingRequest,
    ) -> Result<BrokerOutcome, WalletError> {
        let response = self.broker_bytes(&pending.request);
        let w = &mut self.wallets[wallet];
        w.wallet
            .handle_broker_response(&mut w.store, pending.request_id, &response, &[])
    }

    // ---- The three transaction steps ----------------------------------------

    /// Obtain BrokerScrip.
    pub fn obtain_broker_scrip(
        &mut self,
        wallet: usize,
        account: AccountNumber,
        pin: &Pin,
        value: &str,
    ) -> Result<Vec<Scrip>, WalletError> {
        let w = &mut self.wallets[wallet];
        let pending = w.wallet.obtain_broker_scrip(
            &mut w.store,
            &mut self.rng,
            account,
            pin.clone(),
            amount(value),
        )?;
        self.send_to_broker(wallet, &pending).map(scrip_of)
    }

    /// Obtain VendorScrip.
    pub fn obtain_vendor_scrip(
        &mut self,
        wallet: usize,
        merchant: usize,
        value: &str,
    ) -> Result<Vec<Scrip>, WalletError> {
        let merchant_id = self.merchant_id(merchant);
        let w = &mut self.wallets[wallet];
        let pending = w.wallet.obtain_vendor_scrip(
            &mut w.store,
            &mut self.rng,
            self.now,
            merchant_id,
            amount(value),
        )?;
        self.send_to_broker(wallet, &pending).map(scrip_of)
    }

    /// Buy item: the intent to the broker, and the buy to the merchant
    /// whatever the broker answered, as `scrip_node::Customer::buy` sends
    /// them (the intent is an observation, not an authorisation).
    pub fn buy(
        &mut self,
        wallet: usize,
        merchant: usize,
        purchase: Purchase,
        price: &str,
    ) -> Result<Delivered, WalletError> {
        let purchase = self.buy_unsent(wallet, merchant, purchase, price)?;
        // A refused intent leaves the purchase to the merchant, as on the network.
        let _ = self.send_to_broker(wallet, &purchase.intent);
        let response = self.merchant_bytes(merchant, &purchase.buy.request);
        let w = &mut self.wallets[wallet];
        w.wallet
            .handle_merchant_response(&mut w.store, purchase.buy.request_id, &response)
    }

    /// A purchase stored in the wallet as pending, its intent and Buy not sent.
    pub fn buy_unsent(
        &mut self,
        wallet: usize,
        merchant: usize,
        purchase: Purchase,
        price: &str,
    ) -> Result<PendingPurchase, WalletError> {
        let merchant_id = self.merchant_id(merchant);
        let w = &mut self.wallets[wallet];
        w.wallet.buy(
            &mut w.store,
            &mut self.rng,
            self.now,
            merchant_id,
            purchase,
            amount(price),
        )
    }

    /// Buys a catalog item at its catalog price.
    pub fn buy_item(
        &mut self,
        wallet: usize,
        merchant: usize,
        item: &str,
    ) -> Result<Delivered, WalletError> {
        let price = self.merchants[merchant]
            .merchant
            .catalog()
            .items
            .iter()
            .find(|i| i.id == item)
            .map(|i| i.price)
            .expect("item in catalog");
        self.buy(
            wallet,
            merchant,
            Purchase::Item(item.into()),
            &price.to_string(),
        )
    }

    /// The merchant's oldest queued payment records, at most `max`, as the
    /// signed batch it would send the broker; `None` when none is queued.
    pub fn poll_payment_records(&mut self, merchant: usize, max: usize) -> Option<BrokerRequest> {
        let m = &mut self.merchants[merchant];
        m.merchant
            .poll_payment_records(&mut m.store, max)
            .expect("poll payment records")
    }

    /// Sends the merchant's queued payment records to the broker and applies the acknowledgement.
    pub fn settle(&mut self, merchant: usize) -> Settlement {
        let mut total = Settlement::default();
        loop {
            let Some(batch) = self.poll_payment_records(merchant, 64) else {
                return total;
            };
            let response = self.broker_call(&batch);
            let m = &mut self.merchants[merchant];
            let settlement = m
                .merchant
                .handle_payment_records_ack(&mut m.store, &response, &[])
                .expect("acknowledgement");
            total.recorded += settlement.recorded;
            total.credited = total.credited.checked_add(settlement.credited).unwrap();
            total.refused.extend(settlement.refused);
        }
    }

    pub fn wallet_scrip(&mut self, wallet: usize) -> Vec<scrip_core::store::WalletScrip> {
        let w = &mut self.wallets[wallet];
        w.wallet.scrip(&mut w.store).expect("wallet scrip")
    }

    pub fn wallet_receipts(&mut self, wallet: usize) -> Vec<scrip_core::store::WalletReceipt> {
        let w = &mut self.wallets[wallet];
        w.wallet.receipts(&mut w.store).expect("wallet receipts")
    }

    pub fn wallet_items(&mut self, wallet: usize) -> Vec<scrip_core::store::BoughtItem> {
        let w = &mut self.wallets[wallet];
        scrip_core::wallet::kept_items(&mut w.store).expect("wallet items")
    }

    pub fn wallet_balances(&mut self, wallet: usize) -> scrip_core::wallet::Balances {
        let w = &mut self.wallets[wallet];
        w.wallet.balances(&mut w.store).expect("wallet balances")
    }

    /// Audits the broker's store with its public key only.
    pub fn audit(&mut self) -> scrip_core::audit::AuditReport {
        let snapshot = self.audit_snapshot();
        scrip_core::audit::audit(&self.broker.info().broker, &snapshot, self.now)
    }

    /// The broker's stored state, as an auditor reads it.
    pub fn audit_snapshot(&mut self) -> scrip_core::store::BrokerSnapshot {
        use scrip_core::store::{BrokerStore, BrokerTx};
        self.broker_store
            .begin()
            .and_then(|mut tx| tx.snapshot())
            .expect("broker snapshot")
    }

    /// Checks that the ledger is balanced and that no account that must stay
    /// non-negative is negative. Returns the sum of balances (always zero when it holds).
    pub fn assert_conserved(&mut self) {
        let ledger = self.broker.ledger(&mut self.broker_store).expect("ledger");
        let sum: i128 = ledger.iter().map(|(_, b)| *b as i128).sum();
        assert_eq!(sum, 0, "ledger does not balance: {ledger:?}");
        for (account, balance) in &ledger {
            if account.must_stay_non_negative() {
                assert!(*balance >= 0, "{account} is negative: {balance}");
            }
        }
    }
}

fn scrip_of(outcome: BrokerOutcome) -> Vec<Scrip> {
    match outcome {
        BrokerOutcome::Scrip(scrip) => scrip,
        BrokerOutcome::IntentRecorded => Vec::new(),
    }
}
