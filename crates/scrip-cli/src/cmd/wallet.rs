//! `scrip wallet DIR …`: a peer's wallet on the network.
//!
//! A bought item is kept in the wallet from the commit that settles its
//! purchase (`scrip_core::store::BoughtItem`) until the user has it: written
//! to `--out` and synced, or to standard output. Whatever a run could not
//! hand over, the next command writes to `recovered-<request id>` in the
//! peer directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use scrip_core::wallet::{forget_item, kept_items};
use scrip_core::WalletKeys;
use scrip_node::customer::{Customer, CustomerError};
use scrip_proto::{AccountNumber, Amount, RequestId, Scrip};
use scrip_store_sqlite::SqliteWalletStore;
use serde_json::json;

use crate::dirs::{self, PeerDir};
use crate::output::{escape, terminal_text, CliError, Report};

/// Connects the wallet of a peer directory to its broker, resending anything
/// left pending, and writes out every item the wallet keeps: before it
/// connects, since that needs no broker, and after, for the purchases that
/// resending completed.
pub async fn connect(dir: &Path, net: scrip_node::NetOptions) -> Result<Customer, CliError> {
    let layout = PeerDir(dir.to_owned());
    let broker = super::peer::broker_address(&layout)?;
    let seed = dirs::read_seed(&layout.seed())?;
    let mut store = SqliteWalletStore::open(&layout.wallet()).map_err(CliError::local)?;
    write_kept_items(&mut store, dir)?;
    let mut customer = Customer::connect(broker, WalletKeys::from_seed(&seed), store, net).await?;
    write_kept_items(customer.store(), dir)?;
    Ok(customer)
}

/// Hands over each item the wallet keeps in its `recovered-` file, with a
/// note on stderr. One that cannot be written stays kept, for the next command.
fn write_kept_items(store: &mut SqliteWalletStore, dir: &Path) -> Result<(), CliError> {
    for item in kept_items(store).map_err(CustomerError::from)? {
        let what = format!(
            "the item \"{}\" bought and not yet written out",
            escape(&item.item)
        );
        match hand_over(store, dir, item.request_id, &item.content) {
            Ok(path) => eprintln!("note: {what} is in {}", path.display()),
            Err(error) => eprintln!(
                "note: {what} {error}; the wallet keeps it and tries again on its next command"
            ),
        }
    }
    Ok(())
}

/// Writes an item to `recovered-<request>` in the peer directory, whole or
/// not at all (a synced temporary file renamed over it, and the directory
/// synced), and then lets the wallet forget it.
fn hand_over(
    store: &mut SqliteWalletStore,
    dir: &Path,
    request: RequestId,
    content: &[u8],
) -> Result<PathBuf, String> {
    let path = recovered_path(dir, request);
    let written = tempfile::NamedTempFile::new_in(dir).and_then(|mut file| {
        file.write_all(content)?;
        file.as_file().sync_all()?;
        file.persist(&path).map_err(|e| e.error)?;
        sync_directory(dir)
    });
    written.map_err(|e| format!("cannot be written to {}: {e}", path.display()))?;
    // Should this fail, the item stays kept too, and is written once more.
    forget_item(store, request).map_err(|e| format!("is in {}, but {e}", path.display()))?;
    Ok(path)
}

fn recovered_path(dir: &Path, request: RequestId) -> PathBuf {
    dir.join(format!("recovered-{request}"))
}

fn sync_directory(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `content` to `path` (created or truncated). A regular file, and
/// the directory that names it, are synced, so the item is on disk before
/// the wallet forgets it; a pipe or a device has it once it is written.
fn write_synced(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(content)?;
    if file.metadata()?.is_file() {
        file.sync_all()?;
        sync_directory(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Where standard output goes, which decides how an item is handed over.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stdout {
    Terminal,
    /// A regular file, synced before the wallet forgets the item.
    File,
    /// A pipe or a socket: the reader has the item once it is written.
    Stream,
    /// Anything else, `/dev/null` or a closed descriptor (which the Rust
    /// runtime opens on `/dev/null`): an item written there is lost.
    Nowhere,
}

impl Stdout {
    fn now() -> Stdout {
        use std::os::unix::fs::FileTypeExt;
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return Stdout::Terminal;
        }
        let kind = Stdout::file()
            .and_then(|file| file.metadata())
            .map(|metadata| metadata.file_type());
        match kind {
            Ok(kind) if kind.is_file() => Stdout::File,
            Ok(kind) if kind.is_fifo() || kind.is_socket() => Stdout::Stream,
            _ => Stdout::Nowhere,
        }
    }

    /// Standard output as a file of its own, to ask what it is or sync it.
    fn file() -> std::io::Result<std::fs::File> {
        use std::os::fd::AsFd;
        let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
        Ok(std::fs::File::from(fd))
    }
}

/// Once a purchase's report is out, the user has the item: syncs standard
/// output if it is a regular file (and, where `/proc` names it, its
/// directory), then lets the wallet forget the item.
pub fn forget_delivered(
    customer: &mut Customer,
    dir: &Path,
    request: RequestId,
) -> Result<(), CliError> {
    let kept_hint = || kept_hint(dir, request);
    if Stdout::now() == Stdout::File {
        let synced = Stdout::file()
            .and_then(|file| file.sync_all())
            .and_then(|()| match std::fs::read_link("/proc/self/fd/1") {
                Ok(file) => sync_directory(file.parent().unwrap_or(Path::new("/"))),
                Err(_) => Ok(()),
            });
        synced.map_err(|e| {
            CliError::local(format!("bought, but cannot sync standard output: {e}"))
                .with_hint(kept_hint())
        })?;
    }
    forget_item(customer.store(), request).map_err(|e| {
        CliError::local(format!("bought and written out, but {e}")).with_hint(kept_hint())
    })?;
    Ok(())
}

fn kept_hint(dir: &Path, request: RequestId) -> String {
    format!(
        "the wallet keeps the item and writes it to {} on its next command",
        recovered_path(dir, request).display()
    )
}

fn scrip_json(scrip: &[Scrip]) -> serde_json::Value {
    scrip
        .iter()
        .map(|s| json!({ "kind": s.body.kind.to_string(), "id": s.id().to_string(), "value": s.value().to_string(), "issuer": s.body.issuer.to_string(), "expiry": s.body.expiry.0 }))
        .collect()
}

fn scrip_text(scrip: &[Scrip]) -> String {
    scrip
        .iter()
        .map(|s| format!("{} {} worth {}", s.body.kind, s.id(), s.value()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn obtain_broker_scrip(
    customer: &mut Customer,
    account: AccountNumber,
    amount: Amount,
) -> Result<Report, CliError> {
    let pin = super::read_pin()?;
    let scrip = customer.obtain_broker_scrip(account, pin, amount).await?;
    Ok(Report::new(
        "broker-scrip-obtained",
        format!("obtained {}", scrip_text(&scrip)),
        json!({ "scrip": scrip_json(&scrip) }),
    ))
}

pub async fn obtain_vendor_scrip(
    customer: &mut Customer,
    merchant: &str,
    amount: Amount,
) -> Result<Report, CliError> {
    let entry = customer.resolve(merchant).await?;
    let scrip = customer.obtain_vendor_scrip(entry.merchant, amount).await?;
    Ok(Report::new(
        "vendor-scrip-obtained",
        format!(
            "obtained for {}:\n{}",
            escape(&entry.name),
            scrip_text(&scrip)
        ),
        json!({ "merchant": entry.name, "scrip": scrip_json(&scrip) }),
    ))
}

pub async fn merchants(customer: &Customer) -> Result<Report, CliError> {
    let merchants = customer.merchants().await?;
    let text = merchants
        .iter()
        .map(|m| {
            format!(
                "{:<24} {}",
                escape(&m.name),
                scrip_node::peer_id(&m.merchant)
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let rows: Vec<_> = merchants.iter().map(|m| json!({ "name": m.name, "merchant": m.merchant.to_string(), "peer_id": scrip_node::peer_id(&m.merchant).map(|p| p.to_string()) })).collect();
    Ok(Report::new(
        "merchants",
        if text.is_empty() {
            "no merchant is registered yet".into()
        } else {
            text
        },
        json!({ "merchants": rows }),
    ))
}

pub async fn catalog(customer: &mut Customer, merchant: &str) -> Result<Report, CliError> {
    let entry = customer.resolve(merchant).await?;
    let listing = customer.catalog(entry.merchant).await?;
    let text = listing
        .items
        .iter()
        .map(|i| {
            format!(
                "{:<16} {:>12} {}  {}",
                escape(&i.id),
                i.price.to_string(),
                listing.currency,
                escape(&i.title)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let rows: Vec<_> = listing
        .items
        .iter()
        .map(|i| json!({ "id": i.id, "title": i.title, "price": i.price.to_string() }))
        .collect();
    Ok(Report::new(
        "catalog",
        text,
        json!({ "merchant": listing.name, "currency": listing.currency.to_string(), "items": rows }),
    ))
}

/// Step 3. The report holds the item when standard output delivers it
/// (text a terminal can show, or any bytes into a file or a pipe); with it,
/// the purchase's request id for [`forget_delivered`] once the report is
/// out. An item written to `out`, or to a `recovered-` file because the
/// report cannot deliver it, is forgotten here.
pub async fn buy(
    customer: &mut Customer,
    dir: &Path,
    merchant: &str,
    item: &str,
    out: Option<&Path>,
    top_up: Option<Amount>,
    json_output: bool,
) -> Result<(Report, Option<RequestId>), CliError> {
    let entry = customer.resolve(merchant).await?;
    let delivered = customer.buy(entry.merchant, item, top_up).await?;
    let (request, content) = (delivered.request_id, &delivered.content);
    let change = delivered
        .change
        .as_ref()
        .map(|c| c.value())
        .unwrap_or(Amount::ZERO);
    let mut data = json!({ "merchant": entry.name, "item": item, "change": change.to_string(), "request_id": request.to_string() });
    let (item, name) = (escape(item), escape(&entry.name));
    let kept = |why: String| {
        CliError::local(format!("bought, but {why}")).with_hint(kept_hint(dir, request))
    };
    // Writes the item to its `recovered-` file because the report cannot deliver it.
    let written_to = |path: &Path| {
        format!(
            "bought {item} from {name}, written to {}; change {change}",
            path.display()
        )
    };
    let mut recovered = |why: &str| {
        hand_over(customer.store(), dir, request, content)
            .map(|path| {
                eprintln!("note: {why}; the item is in {}", path.display());
                written_to(&path)
            })
            .map_err(|e| kept(format!("{why}, and the item {e}")))
    };
    let (text, delivers) = match (out, Stdout::now()) {
        (Some(path), _) => {
            write_synced(path, content)
                .map_err(|e| kept(format!("cannot write {}: {e}", path.display())))?;
            forget_item(customer.store(), request)
                .map_err(|e| kept(format!("the item is in {}, and {e}", path.display())))?;
            (written_to(path), None)
        }
        (None, Stdout::Nowhere) => (recovered("standard output goes nowhere")?, None),
        // Exact in JSON: text as a string, anything else as hex.
        (None, _) if json_output => {
            match std::str::from_utf8(content) {
                Ok(text) => data["content"] = json!(text),
                Err(_) => data["content_hex"] = json!(hex::encode(content)),
            }
            (String::new(), Some(request))
        }
        // Text the merchant chose must not drive the terminal.
        (None, Stdout::Terminal) => match terminal_text(content) {
            Some(text) => (text.to_owned(), Some(request)),
            None => (
                recovered(&format!("{} bytes that are not text", content.len()))?,
                None,
            ),
        },
        // Into a file or a pipe, the exact bytes.
        (None, Stdout::File | Stdout::Stream) => {
            let mut stdout = std::io::stdout();
            stdout
                .write_all(content)
                .and_then(|()| stdout.flush())
                .map_err(|e| kept(format!("cannot write the item: {e}")))?;
            (String::new(), Some(request))
        }
    };
    Ok((Report::new("purchase", text, data), delivers))
}

pub async fn balance(customer: &mut Customer) -> Result<Report, CliError> {
    let currency = customer.wallet().broker().currency;
    let balances = customer
        .balances()
        .map_err(scrip_node::customer::CustomerError::from)?;
    let names = customer.merchants().await.unwrap_or_default();
    let name_of = |id: &scrip_proto::MerchantId| {
        names
            .iter()
            .find(|m| &m.merchant == id)
            .map(|m| escape(&m.name))
            .unwrap_or_else(|| id.to_string())
    };
    let mut text = format!("BrokerScrip  {} {currency}", balances.broker_scrip);
    for (merchant, amount) in &balances.vendor_scrip {
        text.push_str(&format!(
            "\nVendorScrip  {amount} {currency} at {}",
            name_of(merchant)
        ));
    }
    if !balances.pending.is_zero() {
        text.push_str(&format!(
            "\npending      {} {currency} (requests whose outcome is not known yet)",
            balances.pending
        ));
    }
    let vendor: Vec<_> = balances.vendor_scrip.iter().map(|(m, a)| json!({ "merchant": name_of(m), "merchant_id": m.to_string(), "amount": a.to_string() })).collect();
    Ok(Report::new(
        "balance",
        text,
        json!({ "currency": currency.to_string(), "broker_scrip": balances.broker_scrip.to_string(), "vendor_scrip": vendor, "pending": balances.pending.to_string() }),
    ))
}

/// Verifies the wallet's receipts and, in a merchant's peer directory, the merchant's too.
pub async fn verify(customer: &mut Customer, dir: &Path) -> Result<Report, CliError> {
    let merchant_db = PeerDir(dir.to_owned()).merchant();
    let merchant_receipts = if merchant_db.exists() {
        use scrip_core::store::{MerchantStore, MerchantTx};
        let mut store =
            scrip_store_sqlite::SqliteMerchantStore::open(&merchant_db).map_err(CliError::local)?;
        store
            .begin()
            .and_then(|mut tx| tx.receipts())
            .map_err(CliError::local)?
    } else {
        Vec::new()
    };
    let verification = customer.verify_log(merchant_receipts).await?;
    let data = json!({ "log_size": verification.log_size, "receipts": verification.receipts, "problems": verification.problems });
    if verification.problems.is_empty() {
        return Ok(Report::new(
            "log-verified",
            format!(
                "all {} receipts are in the broker's log of {} entries, and the log only grew",
                verification.receipts, verification.log_size
            ),
            data,
        ));
    }
    Err(CliError {
        failure: crate::output::Failure::Refused,
        message: format!(
            "the broker's log does not hold what it signed for this wallet:\n{}",
            verification.problems.join("\n")
        ),
        hint: Some(
            "keep this wallet directory as evidence and run `scrip audit` on the broker".into(),
        ),
    })
}
