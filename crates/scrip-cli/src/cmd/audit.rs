//! `scrip audit DIR`: checks a broker directory (live or a copy) with the broker's public key only.

use std::path::Path;

use scrip_core::audit::{audit_with_progress, AuditReport};
use scrip_core::store::{BrokerStore, BrokerTx};
use scrip_proto::PublicKey;
use scrip_store::BrokerDatabase;
use serde_json::json;

use crate::dirs::{self, BrokerDir, BrokerFile};
use crate::output::{CliError, Failure, Report};

/// Audits the broker database in `dir` against `key`, or the key in
/// `DIR/broker.pub`. The report is printed either way; the error says it failed.
pub fn run(dir: &Path, key: Option<PublicKey>) -> Result<(Report, Result<(), CliError>), CliError> {
    let layout = BrokerDir(dir.to_owned());
    let key = match key {
        Some(key) => key,
        None => {
            let text = std::fs::read_to_string(layout.public_key()).map_err(|e| {
                CliError::local(format!(
                    "cannot read {}: {e}",
                    layout.public_key().display()
                ))
                .with_hint("pass the broker's public key with --broker-key")
            })?;
            text.trim()
                .parse()
                .map_err(|e| CliError::local(format!("{}: {e}", layout.public_key().display())))?
        }
    };
    // A copy of a directory may have only the database and the key.
    let database = if layout.config().exists() {
        layout.database(&dirs::read_toml::<BrokerFile>(&layout.config())?)
    } else {
        BrokerDatabase::Sqlite(layout.sqlite_database())
    };
    if let BrokerDatabase::Sqlite(path) = &database {
        if !path.exists() {
            return Err(CliError::local(format!(
                "{} does not exist: is {} a broker directory?",
                path.display(),
                dir.display()
            )));
        }
    }
    let mut store = database.open().map_err(CliError::local)?;
    let snapshot = store.begin().and_then(|mut tx| tx.snapshot());
    let report = match snapshot {
        Ok(snapshot) => {
            // A progress bar on stderr for long audits; hidden when stderr is not a terminal.
            let bar = indicatif::ProgressBar::new(snapshot.leaves.len() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "auditing the log {bar:40} {pos}/{len} entries",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let report = audit_with_progress(&key, &snapshot, scrip_node::now(), &mut |done, _| {
                bar.set_position(done)
            });
            bar.finish_and_clear();
            report
        }
        // A table too damaged to read is itself a finding.
        Err(error) => {
            let mut report = AuditReport::default();
            report.findings.push(scrip_core::audit::Finding {
                check: scrip_core::audit::Check::Ledger,
                location: "the database".into(),
                expected: "readable tables".into(),
                found: error.to_string(),
            });
            report
        }
    };
    let text = render(&report);
    let data = json!({
        "clean": report.clean(),
        "log_size": report.log_size,
        "checkpoint_size": report.latest_checkpoint.as_ref().map(|c| c.size),
        "refused_double_spends": report.refused_double_spends,
        "refused_pins": report.refused_pins.iter().map(|(a, n)| json!({ "account": a.to_string(), "count": n })).collect::<Vec<_>>(),
        "account_locks": report.account_locks.iter().map(|(a, at, until)| json!({ "account": a.to_string(), "at": at.0, "until": until.map(|u| u.0) })).collect::<Vec<_>>(),
        "account_unlocks": report.account_unlocks.iter().map(|(a, at)| json!({ "account": a.to_string(), "at": at.0 })).collect::<Vec<_>>(),
        "locked_accounts": report.locked_accounts.iter().map(|(a, until)| json!({ "account": a.to_string(), "until": until.map(|u| u.0) })).collect::<Vec<_>>(),
        "pending_intents": report.pending_intents,
        "unmatched_intents": report.unmatched_intents,
        "unmatched_payments": report.unmatched_payments,
        "findings": report.findings.iter().map(|f| json!({ "check": f.check.to_string(), "location": f.location, "expected": f.expected, "found": f.found })).collect::<Vec<_>>(),
    });
    let verdict = if report.clean() {
        Ok(())
    } else {
        Err(CliError {
            failure: Failure::Refused,
            message: format!("the audit found {} discrepancies", report.findings.len()),
            hint: None,
        })
    };
    Ok((Report::new("audit", text, data), verdict))
}

fn render(report: &AuditReport) -> String {
    let mut text = format!("log: {} entries", report.log_size);
    if let Some(checkpoint) = &report.latest_checkpoint {
        text.push_str(&format!(
            ", latest signed checkpoint covers {}",
            checkpoint.size
        ));
    }
    text.push_str(&format!(
        "\nmisuse: {} refused double spends, {} wrong PINs",
        report.refused_double_spends,
        report.refused_pins.values().sum::<u64>()
    ));
    for (account, count) in &report.refused_pins {
        text.push_str(&format!("\n  account {account}: {count} wrong PINs"));
    }
    if !report.account_locks.is_empty() {
        text.push_str(&format!(
            "\nmisuse: {} account locks after wrong PINs, {} unlocks by the operator, {} accounts locked now",
            report.account_locks.len(),
            report.account_unlocks.len(),
            report.locked_accounts.len()
        ));
    }
    for (account, at, until) in &report.account_locks {
        let until = until.map_or("until unlocked".to_owned(), |u| format!("until {u}"));
        text.push_str(&format!("\n  account {account}: locked at {at} {until}"));
    }
    for (account, at) in &report.account_unlocks {
        text.push_str(&format!("\n  account {account}: unlocked at {at}"));
    }
    if report.pending_intents > 0 {
        text.push_str(&format!(
            "\nmatching: {} recent intents still wait for their payment records",
            report.pending_intents
        ));
    }
    for unmatched in report
        .unmatched_intents
        .iter()
        .chain(&report.unmatched_payments)
    {
        text.push_str(&format!("\nmatching: {unmatched}"));
    }
    if report.clean() {
        text.push_str("\naudit passed: log, ledger, matching, conservation and misuse all hold");
    } else {
        for finding in &report.findings {
            text.push_str(&format!(
                "\nFAIL [{}] {}: expected {}, found {}",
                finding.check, finding.location, finding.expected, finding.found
            ));
        }
    }
    text
}
