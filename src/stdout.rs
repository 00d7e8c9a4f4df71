//! The one way commands write data to stdout.
//!
//! stdout is data (reports, JSON, file contents, lists); messages for
//! people go through [`crate::printer::Printer`] on stderr. Every data write
//! goes through [`write`], which treats a closed stdout (`EPIPE`: the reader,
//! e.g. `head -3` or `true`, has gone) as the end of the output, not as an
//! error: the command finishes quietly and exits with the code its result
//! calls for (`check`: 1 when stale, `status`: by its findings). Rust ignores
//! SIGPIPE, so a `println!` into a closed pipe panics ("failed printing to
//! stdout", exit 101) and `serde_json::to_writer` hides the `EPIPE` inside
//! its own error; hence this module.
//!
//! `clippy.toml` disallows `print!`, `println!` and `std::io::stdout`
//! everywhere else, so a new command cannot bypass it (CI runs clippy with
//! `-D warnings`). Other write errors (a full disk behind `> file`) are
//! real errors and are returned.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found stdout closed; later writes are skipped.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Write `data` to stdout and flush it.
///
/// Returns `Ok` when stdout is (or has been found) closed: the reader is
/// gone and nothing more will be written. Errors: any other write error,
/// e.g. `ENOSPC` when stdout is redirected to a full file system.
#[allow(clippy::disallowed_methods)]
pub fn write(data: impl AsRef<[u8]>) -> std::io::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(data.as_ref()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// Whether stdout is a terminal (colour and layout decisions).
#[allow(clippy::disallowed_methods)]
pub(crate) fn is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The guard behind clippy.toml's ban, for builds that skip clippy: no
    /// source file but this one writes to stdout directly.
    #[test]
    fn only_this_module_writes_to_stdout() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        for entry in walkdir::WalkDir::new(&src).into_iter().map(Result::unwrap) {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("stdout.rs") {
                continue;
            }
            let text = std::fs::read_to_string(path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                let code = code.replace("eprint", "");
                if ["println!", "print!(", "io::stdout()"].iter().any(|bad| code.contains(bad)) {
                    offenders.push(format!("{}:{}: {line}", path.display(), n + 1));
                }
            }
        }
        assert!(offenders.is_empty(), "write stdout through crate::stdout::write:\n{}", offenders.join("\n"));
    }
}
