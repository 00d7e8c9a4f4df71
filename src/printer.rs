//! Everything meant for people goes through one [`Printer`] on stderr.
//!
//! stdout is reserved for data (paths, JSON). The printer decides what shows:
//! `-q` hides progress and the summary (warnings and errors still show), `-v`
//! adds stage lines with timings (`stage: decision (reason)`), `-vv` adds
//! details. Progress lines are drawn only when stderr is a terminal and we are
//! neither quiet nor verbose, so logs and pipes never get carriage returns.
//! Colour only decorates; `--color` picks it.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// When to use colour on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The single place that writes human-readable output.
#[derive(Debug)]
pub struct Printer {
    verbosity: i8,
    color: bool,
    progress: bool,
    progress_shown: AtomicBool,
    started: Instant,
}

impl Printer {
    /// A printer for `-q` (verbosity -1), default (0), `-v` (1), `-vv` (2).
    pub fn new(verbosity: i8, color: ColorChoice) -> Self {
        let tty = std::io::stderr().is_terminal();
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => tty && std::env::var_os("NO_COLOR").is_none(),
        };
        Printer {
            verbosity,
            color,
            progress: tty && verbosity == 0,
            progress_shown: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    /// A printer that shows nothing but warnings (for library callers/tests).
    pub fn quiet() -> Self {
        Printer::new(-1, ColorChoice::Never)
    }

    /// True with `-q`.
    pub(crate) fn is_quiet(&self) -> bool {
        self.verbosity < 0
    }

    /// A normal informational line (hidden by `-q`).
    pub(crate) fn info(&self, msg: impl AsRef<str>) {
        if self.verbosity >= 0 {
            self.line(msg.as_ref());
        }
    }

    /// A stage line with the elapsed time since start, shown with `-v`.
    pub(crate) fn stage(&self, msg: impl AsRef<str>) {
        if self.verbosity >= 1 {
            let secs = self.started.elapsed().as_secs_f64();
            self.line(&format!("[{secs:7.3}s] {}", msg.as_ref()));
        }
    }

    /// A detail line, shown with `-vv`.
    pub(crate) fn detail(&self, msg: impl AsRef<str>) {
        if self.verbosity >= 2 {
            self.line(msg.as_ref());
        }
    }

    /// A warning; always shown.
    pub(crate) fn warn(&self, msg: impl AsRef<str>) {
        let label = self.paint("33", "warning:");
        self.line(&format!("guestfs-appliance: {label} {}", msg.as_ref()));
    }

    /// An error line (`guestfs-appliance: error: MSG`); always shown. Like
    /// every printer line it never panics, even with stderr closed.
    pub(crate) fn error(&self, msg: impl AsRef<str>) {
        let label = self.paint("31", "error:");
        self.line(&format!("guestfs-appliance: {label} {}", msg.as_ref()));
    }

    /// A transient progress line, redrawn in place on a terminal only.
    pub(crate) fn progress(&self, msg: impl AsRef<str>) {
        if !self.progress {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{}", msg.as_ref());
        let _ = err.flush();
        self.progress_shown.store(true, Ordering::Relaxed);
    }

    /// Erase the progress line, if one is shown.
    pub(crate) fn clear_progress(&self) {
        if self.progress_shown.swap(false, Ordering::Relaxed) {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }

    /// Wrap `text` in an ANSI colour when colour is on.
    pub(crate) fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn line(&self, msg: &str) {
        self.clear_progress();
        let _ = writeln!(std::io::stderr().lock(), "{msg}");
    }
}

/// Format a byte count for people (binary units, one decimal).
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(4 << 30), "4.0 GiB");
    }

    #[test]
    fn paint_is_plain_without_colour() {
        let p = Printer::new(0, ColorChoice::Never);
        assert_eq!(p.paint("31", "x"), "x");
        let p = Printer::new(0, ColorChoice::Always);
        assert_eq!(p.paint("31", "x"), "\x1b[31mx\x1b[0m");
    }
}
