//! One module per command group; each function runs one command and returns what to print.

pub mod audit;
pub mod bench;
pub mod broker;
pub mod demo;
pub mod peer;
pub mod wallet;

use scrip_proto::Pin;

use crate::output::CliError;

/// The PIN, from `SCRIP_PIN` or a prompt on the terminal; never from an argument,
/// where other users could read it in the process list.
pub fn read_pin() -> Result<Pin, CliError> {
    let text = match std::env::var("SCRIP_PIN") {
        Ok(text) => text,
        Err(_) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            rpassword::prompt_password("PIN: ")
                .map_err(|e| CliError::local(format!("cannot read the PIN: {e}")))?
        }
        Err(_) => {
            return Err(CliError::local(
                "no PIN: set SCRIP_PIN, or run on a terminal to be asked for it",
            ))
        }
    };
    Pin::new(text).map_err(CliError::local)
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return drop(tokio::signal::ctrl_c().await),
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
