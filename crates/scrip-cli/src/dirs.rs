//! The files of a broker directory and of a peer directory.
//!
//! ```text
//! broker DIR/  broker.toml (owner-only)  broker.seed (owner-only)  broker.pub  [broker.db]
//! peer DIR/    peer.toml    peer.seed (owner-only)    wallet.db  merchant.db
//! ```
//!
//! A seed is the 32-byte root of every key of its role; it is written once,
//! owner-only, and never printed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use scrip_proto::Secret32;
use scrip_store::BrokerDatabase;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::output::CliError;

#[derive(Debug, Serialize, Deserialize)]
pub struct BrokerFile {
    pub currency: String,
    /// A PostgreSQL URL; absent: the SQLite file `broker.db` in the directory.
    /// It may carry a password, so the file is owner-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PeerFile {
    /// The broker's full address, ending in /p2p/<peer id>.
    pub broker: String,
}

pub struct BrokerDir(pub PathBuf);
pub struct PeerDir(pub PathBuf);

impl BrokerDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("broker.toml")
    }
    pub fn seed(&self) -> PathBuf {
        self.0.join("broker.seed")
    }
    /// The SQLite file, for a broker that keeps its state in the directory.
    pub fn sqlite_database(&self) -> PathBuf {
        self.0.join("broker.db")
    }
    /// Where the broker of `file` keeps its state.
    pub fn database(&self, file: &BrokerFile) -> BrokerDatabase {
        match &file.database {
            Some(url) => BrokerDatabase::Postgres(url.clone()),
            None => BrokerDatabase::Sqlite(self.sqlite_database()),
        }
    }
    /// The broker's public key, hex: all an auditor needs besides the database.
    pub fn public_key(&self) -> PathBuf {
        self.0.join("broker.pub")
    }
}

impl PeerDir {
    pub fn config(&self) -> PathBuf {
        self.0.join("peer.toml")
    }
    pub fn seed(&self) -> PathBuf {
        self.0.join("peer.seed")
    }
    pub fn wallet(&self) -> PathBuf {
        self.0.join("wallet.db")
    }
    pub fn merchant(&self) -> PathBuf {
        self.0.join("merchant.db")
    }
}

/// Creates `dir` (owner-only) for a new role, refusing one already set up.
pub fn create(dir: &Path, marker: &Path, what: &str) -> Result<(), CliError> {
    if marker.exists() {
        return Err(
            CliError::local(format!("{} is already a {what} directory", dir.display()))
                .with_hint("choose a new directory, or use the existing one"),
        );
    }
    let existed = dir.exists();
    fs::create_dir_all(dir)
        .map_err(|e| CliError::local(format!("cannot create {}: {e}", dir.display())))?;
    // Only a directory made here is made private: never change the mode of one the user already had.
    #[cfg(unix)]
    if !existed {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| CliError::local(format!("cannot protect {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Writes a fresh random seed, readable by the owner only.
pub fn write_seed(path: &Path) -> Result<Secret32, CliError> {
    let seed = Secret32::random(&mut rand::rngs::OsRng);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| CliError::local(format!("cannot create {}: {e}", path.display())))?;
    let mut text = hex::encode(seed.expose());
    let written = file
        .write_all(text.as_bytes())
        .and_then(|_| file.sync_all());
    text.zeroize();
    written.map_err(|e| CliError::local(format!("cannot write {}: {e}", path.display())))?;
    Ok(seed)
}

pub fn read_seed(path: &Path) -> Result<Secret32, CliError> {
    let mut text = fs::read_to_string(path).map_err(|e| {
        CliError::local(format!("cannot read {}: {e}", path.display())).with_hint(
            "is this directory initialised? run `scrip broker init` or `scrip peer init` first",
        )
    })?;
    let mut bytes = [0u8; 32];
    let decoded = hex::decode_to_slice(text.trim(), &mut bytes);
    text.zeroize();
    decoded.map_err(|_| {
        CliError::local(format!(
            "{} is damaged: it does not hold a 32-byte seed",
            path.display()
        ))
    })?;
    Ok(Secret32::from_bytes(bytes))
}

pub fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CliError> {
    let text = fs::read_to_string(path).map_err(|e| {
        CliError::local(format!("cannot read {}: {e}", path.display())).with_hint(
            "is this directory initialised? run `scrip broker init` or `scrip peer init` first",
        )
    })?;
    toml::from_str(&text)
        .map_err(|e| CliError::local(format!("{} is not valid: {e}", path.display())))
}

/// Writes a new settings file, owner-only: a broker's may hold a database password.
pub fn write_toml<T: Serialize>(path: &Path, value: &T) -> Result<(), CliError> {
    let text = toml::to_string(value).map_err(|e| CliError::local(e.to_string()))?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| CliError::local(format!("cannot write {}: {e}", path.display())))
}
