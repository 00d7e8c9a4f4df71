//! The only place that runs external programs.
//!
//! Commands are given as an argv (never a shell string). A failure reports
//! the full argv, the exit status and the last kilobyte of stderr, so the
//! user sees what we ran and why it failed without re-running it.

use std::ffi::OsStr;
use std::process::{Command, Stdio};

/// How much of a failed command's stderr is kept in the error.
const STDERR_TAIL: usize = 1024;

/// A failure to run, or a non-zero exit of, an external command.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("could not run `{argv}`: {source} (is it installed and on PATH?)")]
    Spawn {
        /// The command line, for display.
        argv: String,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("`{argv}` failed ({status}){}", tail_suffix(.stderr_tail))]
    Failed {
        /// The command line, for display.
        argv: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of what it printed on stderr.
        stderr_tail: String,
    },
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// Render an argv for messages, quoting words that need it.
pub fn display_argv<S: AsRef<OsStr>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| {
            let s = a.as_ref().to_string_lossy();
            if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
                format!("'{}'", s.replace('\'', "'\\''"))
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `argv` with stdin closed and return its stdout.
///
/// Errors: [`ProcessError::Spawn`] when it cannot start,
/// [`ProcessError::Failed`] on a non-zero exit (with the stderr tail).
pub fn output<S: AsRef<OsStr>>(argv: &[S]) -> Result<Vec<u8>, ProcessError> {
    let shown = display_argv(argv);
    let Some((program, args)) = argv.split_first() else {
        return Err(ProcessError::Spawn {
            argv: shown,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
        });
    };
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .env("LANG", "C")
        .output()
        .map_err(|source| ProcessError::Spawn { argv: shown.clone(), source })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let trimmed = stderr.trim_end();
    let start = trimmed.len().saturating_sub(STDERR_TAIL);
    let start = (start..trimmed.len()).find(|i| trimmed.is_char_boundary(*i)).unwrap_or(0);
    Err(ProcessError::Failed { argv: shown, status: out.status, stderr_tail: trimmed[start..].to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_shows_argv_and_stderr() {
        let err = output(&["sh", "-c", "echo boom >&2; exit 3"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c 'echo boom >&2; exit 3'"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = output(&["/nonexistent/program"]).unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }));
    }

    #[test]
    fn success_returns_stdout() {
        assert_eq!(output(&["echo", "hi"]).unwrap(), b"hi\n");
    }
}
