//! What commands print: plain text for people, or one JSON line for programs.
//!
//! **API boundary**: with `--json` each result is one line
//! `{"type": KIND, "version": 1, "data": {...}}`. Amounts are decimal strings,
//! never JSON numbers, so no program reads money as a float.

use std::fmt;

/// One result of a command.
pub struct Report {
    pub kind: &'static str,
    pub text: String,
    pub data: serde_json::Value,
}

impl Report {
    pub fn new(kind: &'static str, text: impl Into<String>, data: serde_json::Value) -> Report {
        Report {
            kind,
            text: text.into(),
            data,
        }
    }

    pub fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::json!({ "type": self.kind, "version": 1, "data": self.data })
            );
        } else if !self.text.is_empty() {
            println!("{}", self.text);
        }
    }
}

/// How a command failed, which decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A peer refused, definitively: nothing changed (exit 1).
    Refused,
    /// Bad usage or a local problem (exit 2).
    Local,
    /// The outcome is unknown, or a peer is not reachable yet; running the
    /// command again is safe (exit 3).
    Unknown,
}

/// An error for the user: what went wrong, and what to do.
#[derive(Debug)]
pub struct CliError {
    pub failure: Failure,
    pub message: String,
    pub hint: Option<String>,
}

impl CliError {
    pub fn local(message: impl fmt::Display) -> CliError {
        CliError {
            failure: Failure::Local,
            message: message.to_string(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> CliError {
        self.hint = Some(hint.into());
        self
    }

    pub fn exit_code(&self) -> u8 {
        match self.failure {
            Failure::Refused => 1,
            Failure::Local => 2,
            Failure::Unknown => 3,
        }
    }
}

impl From<scrip_node::customer::CustomerError> for CliError {
    fn from(error: scrip_node::customer::CustomerError) -> Self {
        let failure = if error.worth_retrying() {
            Failure::Unknown
        } else if error.refusal().is_some() {
            Failure::Refused
        } else {
            Failure::Local
        };
        CliError {
            failure,
            message: error.to_string(),
            hint: None,
        }
    }
}

impl From<scrip_proto::Refusal> for CliError {
    fn from(refusal: scrip_proto::Refusal) -> Self {
        let failure = if refusal.definitive() {
            Failure::Refused
        } else {
            Failure::Unknown
        };
        CliError {
            failure,
            message: refusal.to_string(),
            hint: None,
        }
    }
}

/// Replaces control characters in text that came from a peer, so a merchant
/// name or catalog entry cannot drive the user's terminal.
pub fn escape(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}
