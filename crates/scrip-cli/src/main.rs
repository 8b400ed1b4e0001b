//! `scrip`: the command line of scrip. It parses, wires the library crates
//! together and prints; all protocol logic lives in scrip-core.
//!
//! Exit status: 0 done; 1 refused by a peer (nothing changed); 2 usage or
//! local error; 3 outcome unknown or a peer not reachable yet (the request
//! is kept and the next wallet command resends it with the same request id).

mod cmd;
mod dirs;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use libp2p::Multiaddr;
use scrip_proto::{AccountNumber, Amount};

use crate::output::{CliError, Report};

#[derive(Parser)]
#[command(
    name = "scrip",
    version,
    about = "Peer-to-peer electronic cash: Millicent's scrip on libp2p"
)]
#[command(
    after_help = "Exit status: 0 done, 1 refused by a peer (nothing changed) or an audit that failed, 2 usage or local error, 3 outcome unknown or a peer not reachable yet (the request is kept; the next wallet command resends it with the same request id, so check `balance` before asking again).\nThe PIN is read from SCRIP_PIN, or asked for on a terminal; never from an argument."
)]
struct Cli {
    /// Print results as JSON lines: {"type", "version", "data"}.
    #[arg(long, global = true)]
    json: bool,
    /// Also find peers on the local network with mDNS (off by default; needs a build with `--features mdns`).
    #[arg(long, global = true)]
    mdns: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The broker: the bank of scrip.
    Broker {
        #[command(subcommand)]
        command: BrokerCommand,
    },
    /// A peer: a customer, and a merchant with --sell.
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
    /// The wallet of a peer directory.
    Wallet {
        /// The peer directory.
        dir: PathBuf,
        #[command(subcommand)]
        command: WalletCommand,
    },
    /// A broker, two merchants and a customer on loopback: the whole story.
    Demo,
    /// Measures scrip against baselines from the same run (use a release build).
    Bench {
        /// A short run, for a smoke test; the figures are rougher.
        #[arg(long)]
        quick: bool,
        /// Also measure the growth curves: 1 to 256 customers, and the spent
        /// set and the audit log from 10^3 to 10^7 (several minutes).
        #[arg(long)]
        curves: bool,
        /// Draw the growth curves into this PNG file (implies --curves).
        #[arg(long, value_name = "FILE")]
        chart: Option<PathBuf>,
        /// Also measure the broker on this PostgreSQL database with 1, 2 and
        /// 4 broker processes, next to SQLite. It works in a new schema of
        /// its own and drops it after: never point it at a production database.
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
    /// One broker process of `scrip bench --postgres`, started by the bench.
    #[command(hide = true)]
    BenchWorker {
        /// The worker's share of the requests, written by the bench.
        requests: PathBuf,
    },
    /// Checks a broker directory (live, or a copy) with the broker's public key only.
    Audit {
        dir: PathBuf,
        /// The broker's public key (hex); by default the one in DIR/broker.pub.
        #[arg(long)]
        broker_key: Option<scrip_proto::PublicKey>,
    },
}

#[derive(Subcommand)]
enum BrokerCommand {
    /// Creates a broker directory with a new identity.
    Init {
        dir: PathBuf,
        #[arg(long, default_value = "EUR")]
        currency: String,
        /// Keep the broker's state in this PostgreSQL database
        /// (postgres://user@host:port/db) instead of an SQLite file in DIR.
        /// Several `scrip broker run` processes of the directory may then
        /// serve it at once.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
    },
    /// Serves the broker until SIGINT or SIGTERM; prints its full address.
    Run {
        dir: PathBuf,
        #[arg(long, default_value = "/ip4/127.0.0.1/tcp/7411")]
        listen: Multiaddr,
    },
    /// Account administration.
    Account {
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Money arriving from the outside bank.
    Deposit {
        dir: PathBuf,
        account: AccountNumber,
        amount: Amount,
    },
    /// Money paid out to the outside bank.
    Withdraw {
        dir: PathBuf,
        account: AccountNumber,
        amount: Amount,
    },
    /// Every account's balance (merchants' earnings included) and the ledger totals.
    Accounts { dir: PathBuf },
    /// Lifts the lock of an account locked after too many wrong PINs, and clears its count of wrong PINs.
    Unlock {
        dir: PathBuf,
        account: AccountNumber,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Opens an account; prints its number and PIN, once.
    Open {
        dir: PathBuf,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum PeerCommand {
    /// Creates a peer directory that talks to the broker at MULTIADDR.
    Init {
        dir: PathBuf,
        #[arg(long)]
        broker: Multiaddr,
    },
    /// Runs the peer until SIGINT or SIGTERM; with --sell, also a merchant.
    Run {
        dir: PathBuf,
        #[arg(long, default_value = "/ip4/127.0.0.1/tcp/0")]
        listen: Multiaddr,
        /// A catalog TOML file: [[item]] with id, title, price, and text or file.
        #[arg(long, requires_all = ["name", "account"])]
        sell: Option<PathBuf>,
        /// The merchant name customers find this peer by.
        #[arg(long)]
        name: Option<String>,
        /// The account sales are credited to (its PIN from SCRIP_PIN or a prompt).
        #[arg(long)]
        account: Option<AccountNumber>,
        /// Days a sale is kept after its scrip expired, so that a customer
        /// who lost the answer can ask again; then it is forgotten, and its
        /// scrip stays refused as expired (at least 1; default: 30).
        #[arg(long, requires = "sell", value_name = "DAYS", value_parser = clap::value_parser!(u64).range(1..))]
        keep_expired_sales: Option<u64>,
    },
}

#[derive(Subcommand)]
enum WalletCommand {
    /// Step 1: BrokerScrip from the account (PIN from SCRIP_PIN or a prompt).
    ObtainBrokerScrip {
        amount: Amount,
        #[arg(long)]
        account: AccountNumber,
    },
    /// Step 2: VendorScrip of MERCHANT (name or peer id) for BrokerScrip.
    ObtainVendorScrip { merchant: String, amount: Amount },
    /// The merchants registered at the broker.
    Merchants,
    /// What MERCHANT sells.
    Catalog { merchant: String },
    /// Step 3: buys ITEM, obtaining VendorScrip first if needed.
    Buy {
        merchant: String,
        item: String,
        /// Write the item here instead of to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// How much VendorScrip to obtain if the wallet holds too little (default: ten times the price, as BrokerScrip allows).
        #[arg(long)]
        top_up: Option<Amount>,
    },
    /// What the wallet holds, by kind and merchant.
    Balance,
    /// Checks every log receipt the wallet kept: still in the broker's log, and the log only grew.
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return fail(&CliError::local(format!(
                "cannot start the runtime: {error}"
            )))
        }
    };
    let json = cli.json;
    let net = scrip_node::NetOptions { mdns: cli.mdns };
    match runtime.block_on(run(cli.command, net, json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &CliError) -> ExitCode {
    // Refusal texts can come from peers: never let them drive the terminal.
    eprintln!("error: {}", output::escape(&error.message));
    if let Some(hint) = &error.hint {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(error.exit_code())
}

async fn run(command: Command, net: scrip_node::NetOptions, json: bool) -> Result<(), CliError> {
    let print = |report: Report| report.print(json);
    match command {
        Command::Broker { command } => match command {
            BrokerCommand::Init {
                dir,
                currency,
                database,
            } => print(cmd::broker::init(&dir, &currency, database.as_deref())?)?,
            BrokerCommand::Run { dir, listen } => cmd::broker::run(&dir, listen, net, json).await?,
            BrokerCommand::Account {
                command: AccountCommand::Open { dir, name },
            } => print(cmd::broker::open_account(&dir, &name)?)?,
            BrokerCommand::Deposit {
                dir,
                account,
                amount,
            } => print(cmd::broker::deposit(&dir, account, amount)?)?,
            BrokerCommand::Withdraw {
                dir,
                account,
                amount,
            } => print(cmd::broker::withdraw(&dir, account, amount)?)?,
            BrokerCommand::Accounts { dir } => print(cmd::broker::accounts(&dir)?)?,
            BrokerCommand::Unlock { dir, account } => print(cmd::broker::unlock(&dir, account)?)?,
        },
        Command::Peer { command } => match command {
            PeerCommand::Init { dir, broker } => print(cmd::peer::init(&dir, &broker)?)?,
            PeerCommand::Run {
                dir,
                listen,
                sell,
                name,
                account,
                keep_expired_sales,
            } => {
                let sell = sell
                    .zip(name)
                    .zip(account)
                    .map(|((catalog, name), account)| cmd::peer::Sell {
                        catalog,
                        name,
                        account,
                        keep_expired_sales,
                    });
                cmd::peer::run(&dir, listen, sell, net, json).await?
            }
        },
        Command::Wallet { dir, command } => {
            let mut customer = cmd::wallet::connect(&dir, net).await?;
            let report = match command {
                WalletCommand::ObtainBrokerScrip { amount, account } => {
                    cmd::wallet::obtain_broker_scrip(&mut customer, account, amount).await?
                }
                WalletCommand::ObtainVendorScrip { merchant, amount } => {
                    cmd::wallet::obtain_vendor_scrip(&mut customer, &merchant, amount).await?
                }
                WalletCommand::Merchants => cmd::wallet::merchants(&customer).await?,
                WalletCommand::Catalog { merchant } => {
                    cmd::wallet::catalog(&mut customer, &merchant).await?
                }
                WalletCommand::Buy {
                    merchant,
                    item,
                    out,
                    top_up,
                } => {
                    let (report, delivers) = cmd::wallet::buy(
                        &mut customer,
                        &dir,
                        &merchant,
                        &item,
                        out.as_deref(),
                        top_up,
                        json,
                    )
                    .await?;
                    print(report)?;
                    // Only now does the user have the item: the wallet may forget it.
                    if let Some(request) = delivers {
                        cmd::wallet::forget_delivered(&mut customer, &dir, request)?;
                    }
                    return Ok(());
                }
                WalletCommand::Balance => cmd::wallet::balance(&mut customer).await?,
                WalletCommand::Verify => cmd::wallet::verify(&mut customer, &dir).await?,
            };
            print(report)?;
        }
        Command::Demo => cmd::demo::run().await?,
        Command::Bench {
            quick,
            curves,
            chart,
            postgres,
        } => print(
            cmd::bench::run(cmd::bench::Options {
                quick,
                curves,
                chart,
                postgres,
            })
            .await?,
        )?,
        Command::BenchWorker { requests } => cmd::bench::worker(&requests)?,
        Command::Audit { dir, broker_key } => {
            let (report, verdict) = cmd::audit::run(&dir, broker_key)?;
            print(report)?;
            verdict?;
        }
    }
    Ok(())
}
