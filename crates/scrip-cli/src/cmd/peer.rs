//! `scrip peer …`: set up and run a peer, a merchant too with --sell.

use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use scrip_core::{CatalogItem, MerchantConfig, MerchantKeys};
use scrip_node::merchant::{MerchantNode, MerchantSetup};
use scrip_proto::{AccountNumber, Amount};
use scrip_store_sqlite::SqliteWalletStore;
use serde::Deserialize;
use serde_json::json;

use crate::dirs::{self, PeerDir, PeerFile};
use crate::output::{CliError, Report};

/// The largest item a catalog may hold: it must fit one message with room to spare.
const MAX_ITEM_BYTES: usize = scrip_proto::encoding::MAX_MESSAGE_LEN / 2;

pub fn init(dir: &Path, broker: &Multiaddr) -> Result<Report, CliError> {
    scrip_node::peer_of(broker).map_err(CliError::local)?;
    let layout = PeerDir(dir.to_owned());
    dirs::create(dir, &layout.seed(), "peer")?;
    dirs::write_seed(&layout.seed())?;
    dirs::write_toml(
        &layout.config(),
        &PeerFile {
            broker: broker.to_string(),
        },
    )?;
    SqliteWalletStore::open(&layout.wallet()).map_err(CliError::local)?;
    Ok(Report::new(
        "peer-initialised",
        format!("peer initialised in {}, broker {broker}", dir.display()),
        json!({ "dir": dir, "broker": broker.to_string() }),
    ))
}

pub fn broker_address(layout: &PeerDir) -> Result<Multiaddr, CliError> {
    let file: PeerFile = dirs::read_toml(&layout.config())?;
    file.broker.parse().map_err(|e| {
        CliError::local(format!(
            "{} names a bad broker address: {e}",
            layout.config().display()
        ))
    })
}

#[derive(Deserialize)]
struct CatalogFile {
    item: Vec<ItemEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemEntry {
    id: String,
    title: String,
    price: String,
    text: Option<String>,
    file: Option<PathBuf>,
}

/// Reads a catalog: every item has an id, a title, a price, and its content
/// as `text` or as a `file` (relative to the catalog).
pub fn load_catalog(path: &Path) -> Result<Vec<CatalogItem>, CliError> {
    let file: CatalogFile = dirs::read_toml(path)?;
    let mut items = Vec::new();
    for entry in file.item {
        let bad = |what: String| {
            CliError::local(format!("{}: item {:?}: {what}", path.display(), entry.id))
        };
        let price: Amount = entry.price.parse().map_err(|e| bad(format!("{e}")))?;
        let content = match (&entry.text, &entry.file) {
            (Some(text), None) => text.clone().into_bytes(),
            (None, Some(file)) => {
                let file = path.parent().unwrap_or(Path::new(".")).join(file);
                std::fs::read(&file)
                    .map_err(|e| bad(format!("cannot read {}: {e}", file.display())))?
            }
            _ => {
                return Err(bad(
                    "give the content as exactly one of `text` or `file`".into()
                ))
            }
        };
        if content.len() > MAX_ITEM_BYTES {
            return Err(bad(format!(
                "content of {} bytes is larger than the limit of {MAX_ITEM_BYTES}",
                content.len()
            )));
        }
        if items.iter().any(|i: &CatalogItem| i.id == entry.id) {
            return Err(bad("the id is used twice".into()));
        }
        items.push(CatalogItem {
            id: entry.id,
            title: entry.title,
            price,
            content,
        });
    }
    Ok(items)
}

/// What `peer run --sell` sells, and how.
pub struct Sell {
    pub catalog: PathBuf,
    pub name: String,
    pub account: AccountNumber,
    /// Days a sale is kept after its scrip expired; `None` for the default.
    pub keep_expired_sales: Option<u64>,
}

pub async fn run(
    dir: &Path,
    listen: Multiaddr,
    sell: Option<Sell>,
    net: scrip_node::NetOptions,
    json: bool,
) -> Result<(), CliError> {
    let layout = PeerDir(dir.to_owned());
    let broker = broker_address(&layout)?;
    let seed = dirs::read_seed(&layout.seed())?;
    // Resend what a previous wallet command left pending, and write out what it bought.
    drop(super::wallet::connect(dir, net).await?);
    let Some(Sell {
        catalog,
        name,
        account,
        keep_expired_sales,
    }) = sell
    else {
        Report::new(
            "peer-running",
            format!("peer running as a customer of {broker}"),
            json!({ "broker": broker.to_string() }),
        )
        .print(json)?;
        super::shutdown_signal().await;
        return Ok(());
    };
    let mut config = MerchantConfig::new(name.clone());
    if let Some(days) = keep_expired_sales {
        config.spent_retention = days.checked_mul(24 * 3600).ok_or_else(|| {
            CliError::local(format!("--keep-expired-sales {days}: too many days"))
        })?;
    }
    let setup = MerchantSetup {
        keys: MerchantKeys::from_seed(&seed),
        config,
        catalog: load_catalog(&catalog)?,
        account,
        pin: super::read_pin()?,
    };
    let merchant = MerchantNode::start(setup, &layout.merchant(), vec![listen], broker, net)
        .await
        .map_err(|e| match e {
            scrip_node::merchant::MerchantStartError::Refused(refusal) => CliError::from(refusal),
            other => CliError::local(other),
        })?;
    for address in merchant.node.listen_addresses() {
        Report::new(
            "merchant-listening",
            format!("merchant {name} ({}) listening on {address}", merchant.node.peer_id()),
            json!({ "name": name, "peer_id": merchant.node.peer_id().to_string(), "address": address.to_string() }),
        )
        .print(json)?;
    }
    super::shutdown_signal().await;
    merchant.shutdown().await;
    Ok(())
}
