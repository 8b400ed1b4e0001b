//! `scrip demo`: placeholder replaced below.
use crate::output::CliError;
pub async fn run() -> Result<(), CliError> {
    Err(CliError::local("not yet"))
}
