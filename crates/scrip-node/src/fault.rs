//! Fault injection for crash tests: a node that ends its own process right
//! after a group commit, before that group's answers are sent. Inert unless
//! [`EXIT_AFTER_COMMIT`] is set; never set it in production.
//!
//! A kill from outside (SIGKILL) rarely lands in the short time between a
//! durable commit and its answers, yet that is the moment where the design
//! is tested hardest: the steps are kept, their clients saw nothing, and
//! their retries must be answered from the stored responses, not done again.
//! With `SCRIP_FAULT_EXIT_AFTER_COMMIT=N` a broker or merchant node exits
//! there, at its N-th group commit ([`crate::group::Grouped`]), every time.
//! `scrip-cli/tests/crash.rs` mixes such exits with its SIGKILLs.
//!
//! The variable is read once, when the node starts ([`arm_from_env`]). The
//! exit is [`std::process::exit`] with [`EXIT_STATUS`]: no destructor runs
//! and no store is closed; the group's answers are never sent, and no other
//! step runs meanwhile, since the group's thread holds the store. (Not
//! `abort`, which may leave a core dump per exit, nor `libc::_exit`, which
//! needs `unsafe` for no difference a peer could see.)

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::NetError;

/// The environment variable: a node exits right after its N-th group
/// commit (N ≥ 1), before any answer of that group is sent.
pub const EXIT_AFTER_COMMIT: &str = "SCRIP_FAULT_EXIT_AFTER_COMMIT";

/// The exit status of a process ended by the hook, so a test can tell it
/// from a crash.
pub const EXIT_STATUS: i32 = 86;

/// Group commits left before the process exits; unset: the hook is inert.
static COMMITS_LEFT: OnceLock<AtomicU64> = OnceLock::new();

/// Arms the hook if [`EXIT_AFTER_COMMIT`] is set. The first node of a
/// process to start arms it; the count is the process's, over every node in it.
///
/// # Errors
///
/// [`NetError::Setup`] if the variable is set but not a positive integer.
pub fn arm_from_env() -> Result<(), NetError> {
    let Some(text) = std::env::var_os(EXIT_AFTER_COMMIT) else {
        return Ok(());
    };
    let commits = commits(&text)?;
    if COMMITS_LEFT.set(AtomicU64::new(commits)).is_ok() {
        tracing::warn!(
            commits,
            "fault injection: this process exits right after group commit {commits}, before answering it"
        );
    }
    Ok(())
}

/// The group commit [`EXIT_AFTER_COMMIT`]'s value names.
fn commits(text: &OsStr) -> Result<u64, NetError> {
    text.to_str()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .filter(|&commits| commits > 0)
        .ok_or_else(|| {
            NetError::Setup(format!(
                "{EXIT_AFTER_COMMIT}={text:?} is not a positive number of group commits"
            ))
        })
}

/// Counts a group commit whose answers are not sent yet, and ends the
/// process if it is the one [`EXIT_AFTER_COMMIT`] names.
pub(crate) fn group_committed() {
    let Some(left) = COMMITS_LEFT.get() else {
        return;
    };
    let before = left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .unwrap_or(0);
    if before == 1 {
        eprintln!(
            "fault injection ({EXIT_AFTER_COMMIT}): exiting after a group commit, before its answers"
        );
        std::process::exit(EXIT_STATUS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_names_a_positive_number_of_group_commits() {
        assert_eq!(commits(OsStr::new("3")).unwrap(), 3);
        assert_eq!(commits(OsStr::new(" 1\n")).unwrap(), 1);
        for bad in ["0", "-1", "", "two", "1.5"] {
            let error = commits(OsStr::new(bad)).unwrap_err().to_string();
            assert!(error.contains(EXIT_AFTER_COMMIT), "{error}");
        }
    }

    #[test]
    fn unarmed_it_counts_nothing_and_never_exits() {
        // No test in this crate arms it: the process is still here.
        for _ in 0..3 {
            group_committed();
        }
        assert!(COMMITS_LEFT.get().is_none());
    }
}
