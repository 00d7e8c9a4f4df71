//! The appliance init that goes into every initrd: the `init/` crate, built
//! statically by build.rs and embedded here, so each binary carries the init
//! it was built with (nothing to install beside it, nothing to find at run
//! time). `$GUESTFS_APPLIANCE_INIT` names another one, for trying a
//! different init without rebuilding.
//!
//! Whichever is used must be a statically linked executable: it runs as
//! PID 1 in an initramfs that holds no libc. This module refuses anything
//! else; writing the initrd is [`crate::image::initrd`]'s business.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use crate::image::initrd;

/// Environment variable naming an init binary to use instead of the
/// embedded one.
pub const INIT_ENV: &str = "GUESTFS_APPLIANCE_INIT";

/// Largest init program we read into memory (a static init is a few MB).
const INIT_MAX: u64 = 64 << 20;

/// The init built by build.rs from `init/` (static, stripped).
pub static EMBEDDED: &[u8] = include_bytes!(env!("GUESTFS_APPLIANCE_INIT_BIN"));

/// Errors from choosing the init.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InitError {
    /// `$GUESTFS_APPLIANCE_INIT` names a file we cannot read.
    #[error("reading the appliance init {path} (from ${INIT_ENV}): {source}; unset {INIT_ENV} to use the built-in init")]
    Read {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The init is not a statically linked executable.
    #[error("{from}: the appliance init must be a statically linked executable (it runs with no libc in the initrd); {hint}")]
    NotStatic {
        /// Where the init came from.
        from: InitSource,
        /// What to do about it.
        hint: &'static str,
    },
}

/// Where the init came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InitSource {
    /// Built into this binary.
    Embedded,
    /// Named by `$GUESTFS_APPLIANCE_INIT`.
    Env(PathBuf),
}

impl fmt::Display for InitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitSource::Embedded => f.write_str("the built-in init"),
            InitSource::Env(path) => write!(f, "{} (from ${INIT_ENV})", path.display()),
        }
    }
}

/// The init to put in the initrd, and where it came from.
#[derive(Debug, Clone)]
pub(crate) struct InitProgram {
    /// Where it came from, for messages.
    pub(crate) source: InitSource,
    /// The executable.
    pub(crate) bytes: Cow<'static, [u8]>,
}

/// The init to use: `$GUESTFS_APPLIANCE_INIT` when set (and not empty), else
/// the embedded one.
///
/// Errors: the named file cannot be read, or the init is not statically
/// linked ([`InitError::NotStatic`]).
pub(crate) fn choose() -> Result<InitProgram, InitError> {
    let program = match std::env::var_os(INIT_ENV).filter(|p| !p.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            let bytes = crate::bounded::read(&path, INIT_MAX)
                .map_err(|source| InitError::Read { path: path.clone(), source })?;
            InitProgram { source: InitSource::Env(path), bytes: Cow::Owned(bytes) }
        }
        None => InitProgram { source: InitSource::Embedded, bytes: Cow::Borrowed(EMBEDDED) },
    };
    if !initrd::is_static_elf(&program.bytes) {
        let hint = match program.source {
            InitSource::Env(_) => "link it with -C target-feature=+crt-static, or unset the variable",
            InitSource::Embedded => {
                "this binary was built wrongly: rebuild it with this repository's build.rs"
            }
        };
        return Err(InitError::NotStatic { from: program.source, hint });
    }
    Ok(program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_init_is_a_static_executable() {
        assert!(EMBEDDED.len() > 10_000, "embedded init is only {} bytes", EMBEDDED.len());
        assert!(initrd::is_static_elf(EMBEDDED));
    }

    #[test]
    fn not_static_error_names_the_source_and_what_to_do() {
        let err = InitError::NotStatic {
            from: InitSource::Env(PathBuf::from("/bin/sh")),
            hint: "link it with -C target-feature=+crt-static, or unset the variable",
        };
        let text = err.to_string();
        assert!(
            text.contains("/bin/sh") && text.contains(INIT_ENV) && text.contains("statically linked"),
            "{text}"
        );
    }
}
