//! Ctrl-C (and SIGTERM, SIGHUP) during a benchmark: stop the running
//! launches and still remove the private cache directory, which holds a
//! ~700 MB supermin appliance that would otherwise be left in /var/tmp.
//!
//! The signals are blocked in the calling thread before any launch thread
//! exists (threads inherit the mask; children do not: std resets the
//! signal mask before exec), and one watcher thread takes them with
//! `sigwait`, so no signal handler and no `unsafe` is needed. The first
//! signal raises the cancel flag every `process::Timed` launch polls; the
//! launches are in their own process groups (they do not get the
//! terminal's Ctrl-C themselves) and are stopped by `Timed`. A second
//! signal exits at once, leaving the cleanup undone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};

/// The exit code of a second, impatient interrupt (house style: 2 = error).
const FORCED_EXIT: i32 = 2;

/// Route SIGINT, SIGTERM and SIGHUP to a flag (module docs). Call before
/// starting any thread that should not take these signals itself.
///
/// Errors: the signal mask could not be changed (then nothing changed).
pub(crate) fn cancel_on_signals() -> nix::Result<Arc<AtomicBool>> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block()?;
    let flag = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&flag);
    std::thread::spawn(move || loop {
        let Ok(signal) = set.wait() else { return };
        // The first signal is reported by the command once the launch has
        // stopped; this thread has no printer, so only the forced exit
        // writes its own line.
        if raised.swap(true, Ordering::SeqCst) {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("\nguestfs-appliance: {signal} again: exiting without cleaning up\n").as_bytes(),
            );
            std::process::exit(FORCED_EXIT);
        }
    });
    Ok(flag)
}
