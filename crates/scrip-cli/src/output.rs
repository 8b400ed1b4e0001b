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

    /// Writes the report to standard output; an error if it cannot (a closed
    /// pipe, a full disk), never a panic.
    pub fn print(&self, json: bool) -> Result<(), CliError> {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let written = if json {
            let line = serde_json::json!({ "type": self.kind, "version": 1, "data": self.data });
            writeln!(stdout, "{line}")
        } else if !self.text.is_empty() {
            writeln!(stdout, "{}", self.text)
        } else {
            Ok(())
        };
        written
            .and_then(|()| stdout.flush())
            .map_err(|e| CliError::local(format!("cannot write to standard output: {e}")))
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

/// An item's content as text a terminal shows exactly: valid UTF-8 whose
/// only control characters are tabs and line breaks (`\n` or `\r\n`).
/// `None` for anything else, which only its exact bytes in a file can deliver.
pub fn terminal_text(content: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(content).ok()?;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let line_break = c == '\r' && chars.peek() == Some(&'\n');
        if c.is_control() && c != '\n' && c != '\t' && !line_break {
            return None;
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::terminal_text;

    #[test]
    fn a_terminal_is_shown_only_text_that_cannot_drive_it() {
        for text in ["tea", "two\nlines\r\nand\ttabs\n", "thé ☕", ""] {
            assert_eq!(terminal_text(text.as_bytes()), Some(text));
        }
        for bytes in [
            &b"\x1b[2J"[..],
            b"bell\x07",
            b"back\rover",
            b"ends in \r",
            b"\xff\xfe",
        ] {
            assert_eq!(terminal_text(bytes), None, "{bytes:?}");
        }
    }
}
