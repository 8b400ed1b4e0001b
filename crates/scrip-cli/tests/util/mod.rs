//! Helpers for the integration tests: they start real `scrip` processes on
//! 127.0.0.1 and drive them through the command line, as a user would.
//!
//! - [`Scrip`] runs one command with `--json` and hands back the `data` of its
//!   single JSON line, or its exit code and error line when failure is wanted.
//!   Any other outcome panics with the command, its exit status and stderr.
//! - [`Daemon`] runs `broker run` or `peer run` in the background, waits for
//!   its listening line, and ends it (SIGTERM, then SIGKILL) when dropped.
//! - [`Network`] is a broker in a temporary directory with helpers to open
//!   and fund accounts, set up peer directories and start merchants.
//! - [`micros`] reads a decimal amount string into integer micro-units, so
//!   money is compared exactly and never as a float.
//!
//! Every wait is bounded: a command or a daemon that hangs fails the test
//! instead of hanging it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `scrip` binary built for these tests.
pub const SCRIP: &str = env!("CARGO_BIN_EXE_scrip");

/// The longest one command may take before the test gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a daemon may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest to wait for settlement (records are forwarded every 200 ms).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads an amount such as `"95.00"`, `"0.0035"`, `"-1.5"` or `"12"` into
/// micro-units (six decimal places); `None` for anything else, including
/// more than six decimal places, which the product never prints.
pub fn parse_micros(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = match digits.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return None,
        None => (digits, ""),
    };
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !is_digits(whole) || !(fraction.is_empty() || is_digits(fraction)) || fraction.len() > 6 {
        return None;
    }
    let value =
        whole.parse::<i128>().ok()? * 1_000_000 + format!("{fraction:0<6}").parse::<i128>().ok()?;
    Some(if negative { -value } else { value })
}

/// [`parse_micros`], panicking on what is not an amount.
pub fn micros(text: &str) -> i128 {
    parse_micros(text).unwrap_or_else(|| {
        panic!("{text:?} is not a decimal amount with at most six decimal places")
    })
}

/// The amount at `data[key]`, which must be a decimal string, in micro-units.
pub fn amount_at(data: &Value, key: &str) -> i128 {
    micros(
        data[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} is not an amount string in {data}")),
    )
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Outcome {
    pub shown: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn describe(&self) -> String {
        format!(
            "`{}` exited with {}\nstdout:\n{}\nstderr:\n{}",
            self.shown, self.status, self.stdout, self.stderr
        )
    }
}

/// One `scrip --json …` command.
pub struct Scrip {
    command: Command,
    shown: String,
}

impl Scrip {
    /// `scrip --json ARGS…`, with `SCRIP_PIN` unset unless [`Scrip::pin`] sets it.
    pub fn new<I, S>(args: I) -> Scrip
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut command = Command::new(SCRIP);
        command
            .arg("--json")
            .args(&args)
            .env_remove("SCRIP_PIN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = std::iter::once("scrip --json".to_owned())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        Scrip { command, shown }
    }

    /// Passes the PIN the way users do: in `SCRIP_PIN`.
    pub fn pin(mut self, pin: &str) -> Scrip {
        self.command.env("SCRIP_PIN", pin);
        self
    }

    /// Runs the command to its end (at most [`COMMAND_TIMEOUT`]).
    pub fn outcome(mut self) -> Outcome {
        let child = self
            .command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", self.shown));
        let pid = child.id();
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            let _ = sender.send(child.wait_with_output());
        });
        let output = match receiver.recv_timeout(COMMAND_TIMEOUT) {
            Ok(output) => output.unwrap_or_else(|e| panic!("`{}` failed: {e}", self.shown)),
            Err(_) => {
                signal(pid, "KILL");
                panic!("`{}` did not finish within {COMMAND_TIMEOUT:?}", self.shown);
            }
        };
        Outcome {
            shown: self.shown,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs the command, which must succeed and print exactly one JSON line
    /// of type `kind`, version 1; returns its `data`.
    pub fn ok(self, kind: &str) -> Value {
        let outcome = self.outcome();
        assert!(outcome.status.success(), "{}", outcome.describe());
        let lines: Vec<&str> = outcome.stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "one JSON line wanted: {}",
            outcome.describe()
        );
        let line: Value = serde_json::from_str(lines[0])
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", outcome.describe()));
        assert_eq!(line["type"], kind, "{}", outcome.describe());
        assert_eq!(line["version"], 1, "{}", outcome.describe());
        assert!(line["data"].is_object(), "{}", outcome.describe());
        line["data"].clone()
    }

    /// Runs the command, which must exit with `code`, print nothing on
    /// stdout, and explain itself on stderr with a first line `error: …`;
    /// returns that first line.
    pub fn fails(self, code: i32) -> String {
        let outcome = self.outcome();
        assert_eq!(outcome.status.code(), Some(code), "{}", outcome.describe());
        assert!(outcome.stdout.is_empty(), "{}", outcome.describe());
        let first = outcome.stderr.lines().next().unwrap_or_default().to_owned();
        assert!(
            first.starts_with("error: ") && first.len() > "error: ".len(),
            "an `error: …` line wanted: {}",
            outcome.describe()
        );
        first
    }
}

/// Sends `signal` (e.g. "TERM") to a process we started.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A `scrip … run` process in the background, ended when dropped.
pub struct Daemon {
    child: Child,
    shown: String,
    /// The `data` of the listening line.
    pub data: Value,
    /// Where its stderr goes, shown when it fails to start.
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `scrip --json ARGS… --listen /ip4/127.0.0.1/tcp/0` and waits
    /// for the first stdout line of type `kind` (at most [`START_TIMEOUT`]).
    /// Its stderr goes to `log`.
    pub fn start(args: &[&str], pin: Option<&str>, kind: &str, log: &Path) -> Daemon {
        Daemon::start_on(args, pin, kind, log, "/ip4/127.0.0.1/tcp/0", &[])
    }

    /// [`Daemon::start`] listening on `listen`, with `env` added to its
    /// environment. A process that the fault hook ([`scrip_node::fault`])
    /// ends before its listening line is returned with `data` null.
    pub fn start_on(
        args: &[&str],
        pin: Option<&str>,
        kind: &str,
        log: &Path,
        listen: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        let shown = format!("scrip --json {} --listen {listen}", args.join(" "));
        let mut command = Command::new(SCRIP);
        command
            .arg("--json")
            .args(args)
            .args(["--listen", listen])
            .env_remove("SCRIP_PIN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(log).expect("create the daemon's log"))
            .envs(env.iter().copied());
        if let Some(pin) = pin {
            command.env("SCRIP_PIN", pin);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{shown}`: {e}"));
        // Read stdout on a thread for the whole life of the process, so it
        // never blocks on a full pipe.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    // Nobody listens any more: keep draining.
                    continue;
                }
            }
        });
        let mut daemon = Daemon {
            child,
            shown,
            data: Value::Null,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(value) = serde_json::from_str::<Value>(&line) {
                        if value["type"] == kind && value["version"] == 1 {
                            daemon.data = value["data"].clone();
                            return daemon;
                        }
                    }
                    seen.push(line);
                }
                Err(error) => {
                    let status = match error {
                        // Its stdout is closed: it has ended, or is ending.
                        mpsc::RecvTimeoutError::Disconnected => daemon.child.wait().ok(),
                        mpsc::RecvTimeoutError::Timeout => daemon.child.try_wait().ok().flatten(),
                    };
                    if status.and_then(|s| s.code()) == Some(scrip_node::fault::EXIT_STATUS) {
                        return daemon;
                    }
                    panic!(
                        "`{}` printed no {kind:?} line within {START_TIMEOUT:?} (exit status {status:?})\nstdout:\n{}\nstderr:\n{}",
                        daemon.shown,
                        seen.join("\n"),
                        std::fs::read_to_string(&daemon.log).unwrap_or_default()
                    );
                }
            }
        }
    }

    /// The `data.address` of its listening line.
    pub fn address(&self) -> String {
        self.data["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address in {}", self.data))
            .to_owned()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits at most `timeout` for the process to end by itself: its exit
    /// status, or `None` if it still runs.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ends the process at once with SIGKILL, as a crash would: nothing of
    /// it runs after the signal (what it wrote is still in the operating
    /// system's cache, unlike after a power cut). Waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Ends the process as an operator would, with SIGTERM, and returns how
    /// it exited; SIGKILL if it takes more than 5 s (then `None`).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An account at the broker, as `broker account open` printed it.
#[derive(Debug, Clone)]
pub struct Account {
    pub number: String,
    pub pin: String,
}

/// One item of a catalog.
pub struct Item<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub price: &'a str,
    pub text: &'a str,
}

/// A TOML basic string: JSON's string escapes are all valid TOML escapes.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

/// A running broker in a temporary directory, with the peers set up around it.
/// Fields drop in order: the daemon ends before its directory is removed.
pub struct Network {
    pub broker: Daemon,
    pub broker_dir: PathBuf,
    pub root: tempfile::TempDir,
}

impl Network {
    /// `broker init` and `broker run` in a fresh temporary directory.
    pub fn start() -> Network {
        Network::start_with(&[])
    }

    /// The same, with `broker init DIR INIT_ARGS…` (e.g. `--database URL`).
    pub fn start_with(init_args: &[&str]) -> Network {
        let root = tempfile::tempdir().expect("a temporary directory");
        let broker_dir = root.path().join("broker");
        let mut init: Vec<OsString> =
            vec!["broker".into(), "init".into(), broker_dir.clone().into()];
        init.extend(init_args.iter().map(OsString::from));
        let init = Scrip::new(init).ok("broker-initialised");
        assert_eq!(init["currency"], "EUR");
        let broker = Daemon::start(
            &["broker", "run", path_str(&broker_dir)],
            None,
            "broker-listening",
            &root.path().join("broker.log"),
        );
        let address = broker.address();
        assert!(
            address.starts_with("/ip4/127.0.0.1/tcp/")
                && address.contains(&format!("/p2p/{}", init["peer_id"].as_str().unwrap())),
            "the broker's address {address} names neither loopback nor its peer id {}",
            init["peer_id"]
        );
        Network {
            broker,
            broker_dir,
            root,
        }
    }

    /// A `scrip broker SUBCOMMAND BROKER_DIR ARGS…` command.
    pub fn admin(&self, subcommand: &[&str], args: &[&str]) -> Scrip {
        let mut all: Vec<&str> = vec!["broker"];
        all.extend_from_slice(subcommand);
        all.push(path_str(&self.broker_dir));
        all.extend_from_slice(args);
        Scrip::new(all)
    }

    /// `scrip audit DIR` on the broker directory; the audit must pass.
    pub fn audit(&self) -> Value {
        Scrip::new(["audit", path_str(&self.broker_dir)]).ok("audit")
    }

    /// `broker account open --name NAME`.
    pub fn open_account(&self, name: &str) -> Account {
        let data = self
            .admin(&["account", "open"], &["--name", name])
            .ok("account-opened");
        assert_eq!(data["name"], name);
        let number = data["account"].as_str().expect("an account number");
        assert!(
            number.len() == 12 && number.bytes().all(|b| b.is_ascii_digit()),
            "account number {number:?} is not twelve digits"
        );
        Account {
            number: number.to_owned(),
            pin: data["pin"].as_str().expect("a PIN").to_owned(),
        }
    }

    /// `broker deposit` of `amount`; checks and returns the new balance.
    pub fn deposit(&self, account: &Account, amount: &str) -> i128 {
        let before = self.balance(&account.number);
        let data = self
            .admin(&["deposit"], &[&account.number, amount])
            .ok("deposit");
        assert_eq!(data["account"], account.number.as_str());
        assert_eq!(amount_at(&data, "amount"), micros(amount));
        let balance = amount_at(&data, "balance");
        assert_eq!(balance, before + micros(amount), "deposit of {amount}");
        balance
    }

    /// An account opened and funded with `amount`.
    pub fn funded_account(&self, name: &str, amount: &str) -> Account {
        let account = self.open_account(name);
        assert_eq!(self.deposit(&account, amount), micros(amount));
        account
    }

    /// Another `broker run` process of the same directory, on a new port:
    /// the same broker, serving the same database.
    pub fn another_broker_process(&self, name: &str) -> Daemon {
        let process = Daemon::start(
            &["broker", "run", path_str(&self.broker_dir)],
            None,
            "broker-listening",
            &self.path(&format!("{name}.log")),
        );
        let peer_id = |address: &str| address.split("/p2p/").nth(1).map(str::to_owned);
        assert_eq!(
            peer_id(&process.address()),
            peer_id(&self.broker.address()),
            "one broker identity"
        );
        process
    }

    /// `peer init` of a new peer directory named `name` whose broker is the
    /// process at `address`.
    pub fn peer_of(&self, name: &str, address: &str) -> PathBuf {
        let dir = self.path(name);
        let data = Scrip::new([
            "peer".as_ref(),
            "init".as_ref(),
            dir.as_os_str(),
            "--broker".as_ref(),
            address.as_ref(),
        ])
        .ok("peer-initialised");
        assert_eq!(data["broker"], address);
        dir
    }

    /// Stops the broker with SIGTERM, checks it exits 0, and starts it
    /// again on the same address, so peers find it where they knew it.
    pub fn restart_broker(&mut self) {
        let address = self.broker.address();
        let listen = address
            .split("/p2p/")
            .next()
            .expect("split yields at least one part")
            .to_owned();
        let status = self.broker.stop();
        assert!(
            status.is_some_and(|s| s.success()),
            "the broker exited with {status:?} on SIGTERM"
        );
        self.broker = Daemon::start_on(
            &["broker", "run", path_str(&self.broker_dir)],
            None,
            "broker-listening",
            &self.root.path().join("broker-restarted.log"),
            &listen,
            &[],
        );
        assert_eq!(self.broker.address(), address, "restarted elsewhere");
    }

    /// `broker accounts`: its `data`.
    pub fn accounts(&self) -> Value {
        self.admin(&["accounts"], &[]).ok("accounts")
    }

    /// Every account's balance in micro-units, by number.
    pub fn balances(&self) -> BTreeMap<String, i128> {
        rows(&self.accounts()["accounts"])
            .iter()
            .map(|row| {
                (
                    row["account"].as_str().expect("a number").to_owned(),
                    amount_at(row, "balance"),
                )
            })
            .collect()
    }

    /// One account's balance in micro-units.
    pub fn balance(&self, number: &str) -> i128 {
        *self
            .balances()
            .get(number)
            .unwrap_or_else(|| panic!("no account {number} in `broker accounts`"))
    }

    /// Polls `broker accounts` until `number` holds exactly `expected`
    /// (micro-units), for at most [`SETTLE_TIMEOUT`]; returns the last
    /// `broker accounts` data.
    pub fn wait_for_balance(&self, number: &str, expected: i128) -> Value {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let data = self.accounts();
            let balance = rows(&data["accounts"])
                .iter()
                .find(|row| row["account"] == number)
                .map(|row| amount_at(row, "balance"));
            if balance == Some(expected) {
                return data;
            }
            assert!(
                Instant::now() < deadline,
                "account {number} holds {balance:?} micro-units, not {expected}, after {SETTLE_TIMEOUT:?}: {data}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Checks that value is conserved in the books: everything deposited
    /// and not withdrawn is in an account or outstanding as scrip.
    pub fn assert_conserved(&self) -> Value {
        let data = self.accounts();
        let in_accounts: i128 = rows(&data["accounts"])
            .iter()
            .map(|row| amount_at(row, "balance"))
            .sum();
        let deposited = amount_at(&data, "deposited");
        let withdrawn = amount_at(&data, "withdrawn");
        let broker_scrip = amount_at(&data, "outstanding_broker_scrip");
        let vendor_scrip = amount_at(&data, "outstanding_vendor_scrip");
        assert_eq!(
            deposited - withdrawn,
            in_accounts + broker_scrip + vendor_scrip,
            "value is not conserved: {data}"
        );
        data
    }

    /// A directory under the temporary root.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// `peer init` of a new peer directory named `name`.
    pub fn peer(&self, name: &str) -> PathBuf {
        self.peer_of(name, &self.broker.address())
    }

    /// A new peer directory selling `items` as merchant `name`, credited to
    /// `account`: its catalog is written into the directory, and the daemon
    /// is returned once registered and serving.
    pub fn merchant(&self, name: &str, account: &Account, items: &[Item]) -> (PathBuf, Daemon) {
        let dir = self.peer(name);
        let mut text = String::new();
        for item in items {
            text.push_str(&format!(
                "[[item]]\nid = {}\ntitle = {}\nprice = {}\ntext = {}\n\n",
                toml_string(item.id),
                toml_string(item.title),
                toml_string(item.price),
                toml_string(item.text)
            ));
        }
        std::fs::write(dir.join("catalog.toml"), text).expect("write the catalog");
        let daemon = self.sell(&dir, name, account);
        (dir, daemon)
    }

    /// `peer run DIR --sell DIR/catalog.toml --name NAME --account NUMBER`,
    /// once registered and serving.
    pub fn sell(&self, dir: &Path, name: &str, account: &Account) -> Daemon {
        let catalog = dir.join("catalog.toml");
        let log = (1..)
            .map(|n| self.path(&format!("{name}.{n}.log")))
            .find(|log| !log.exists())
            .expect("a free log name");
        let daemon = Daemon::start(
            &[
                "peer",
                "run",
                path_str(dir),
                "--sell",
                path_str(&catalog),
                "--name",
                name,
                "--account",
                &account.number,
            ],
            Some(&account.pin),
            "merchant-listening",
            &log,
        );
        assert_eq!(daemon.data["name"], name);
        let address = daemon.address();
        assert!(
            address.starts_with("/ip4/127.0.0.1/tcp/")
                && address.ends_with(daemon.data["peer_id"].as_str().unwrap_or("?")),
            "merchant address {address}"
        );
        daemon
    }
}

/// `scrip --json wallet DIR ARGS…`.
pub fn wallet(dir: &Path, args: &[&str]) -> Scrip {
    let mut all: Vec<OsString> = vec!["wallet".into(), dir.into()];
    all.extend(args.iter().map(OsString::from));
    Scrip::new(all)
}

/// `wallet DIR balance`: BrokerScrip, VendorScrip by merchant name, and pending,
/// in micro-units.
pub struct Balance {
    pub broker_scrip: i128,
    pub vendor_scrip: BTreeMap<String, i128>,
    pub pending: i128,
}

impl Balance {
    /// BrokerScrip plus all VendorScrip.
    pub fn total(&self) -> i128 {
        self.broker_scrip + self.vendor_scrip.values().sum::<i128>()
    }
}

pub fn balance(dir: &Path) -> Balance {
    let data = wallet(dir, &["balance"]).ok("balance");
    assert_eq!(data["currency"], "EUR");
    let mut vendor_scrip = BTreeMap::new();
    for row in rows(&data["vendor_scrip"]) {
        let name = row["merchant"].as_str().expect("a merchant").to_owned();
        let previous = vendor_scrip.insert(name, amount_at(row, "amount"));
        assert!(previous.is_none(), "a merchant listed twice: {data}");
    }
    Balance {
        broker_scrip: amount_at(&data, "broker_scrip"),
        vendor_scrip,
        pending: amount_at(&data, "pending"),
    }
}

/// The elements of a JSON array.
pub fn rows(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
}

/// A path as a `&str` (the temporary directories are UTF-8).
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}
