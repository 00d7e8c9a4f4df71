//! Kernel command line parsing for the init: `quiet` and `root=`.
//!
//! Pure functions only, so they are unit-tested on the host; the init's
//! `main` reads `/proc/cmdline` and acts on the result.

use std::fmt;

/// The root device named by `root=` (docs/supermin-compat.md, "The init",
/// step 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSpec {
    /// `root=UUID=...`: the whole disk whose ext2 superblock UUID (16 bytes
    /// at offset 0x468) equals these bytes.
    Uuid([u8; 16]),
    /// `root=/dev/NAME`: the whole disk with kernel name NAME (as in
    /// `/sys/block/NAME`).
    Device(String),
}

impl RootSpec {
    /// Whether the root is persistent memory, mounted with `-o dax` as
    /// supermin does.
    pub fn is_pmem(&self) -> bool {
        matches!(self, RootSpec::Device(name) if name.starts_with("pmem"))
    }
}

impl fmt::Display for RootSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootSpec::Uuid(bytes) => {
                f.write_str("UUID=")?;
                for (i, b) in bytes.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            RootSpec::Device(name) => write!(f, "/dev/{name}"),
        }
    }
}

/// Why `root=` could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdlineError {
    /// No word starts with `root=`.
    NoRoot,
    /// `root=UUID=` without exactly 32 hex digits (dashes ignored).
    BadUuid(String),
    /// A `root=` form other than `UUID=...` or `/dev/NAME`.
    Unknown(String),
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdlineError::NoRoot => f.write_str(
                "no root= on the kernel command line; add root=UUID=<uuid of the appliance root image>",
            ),
            CmdlineError::BadUuid(v) => write!(
                f,
                "root={v}: a UUID must have 32 hex digits (dashes are ignored); use the UUID of the root image"
            ),
            CmdlineError::Unknown(v) => {
                write!(f, "root={v}: unknown root= form; use root=UUID=<uuid> or root=/dev/<whole disk>")
            }
        }
    }
}

/// Whether the init should stay silent: `quiet` occurs anywhere in the
/// command line, even inside another word (supermin's substring test,
/// docs/supermin-compat.md, "The init", step 2; libguestfs relies on plain
/// `quiet`).
pub fn is_quiet(cmdline: &str) -> bool {
    cmdline.contains("quiet")
}

/// Parses the first word starting with `root=`.
///
/// Unlike supermin's plain substring search, only a whole word counts, so a
/// parameter such as `guestfs_root=x` is not mistaken for `root=`.
///
/// # Errors
/// [`CmdlineError`] when there is no `root=`, the UUID is malformed, or the
/// form is neither `UUID=` nor `/dev/NAME` (NAME non-empty, no `/`).
pub fn parse_root(cmdline: &str) -> Result<RootSpec, CmdlineError> {
    let value = cmdline
        .split_ascii_whitespace()
        .find_map(|word| word.strip_prefix("root="))
        .ok_or(CmdlineError::NoRoot)?;
    if let Some(uuid) = value.strip_prefix("UUID=") {
        return parse_uuid(uuid).map(RootSpec::Uuid).ok_or_else(|| CmdlineError::BadUuid(value.to_owned()));
    }
    match value.strip_prefix("/dev/") {
        Some(name) if !name.is_empty() && !name.contains('/') => Ok(RootSpec::Device(name.to_owned())),
        _ => Err(CmdlineError::Unknown(value.to_owned())),
    }
}

/// 32 hex digits, `-` anywhere skipped, into 16 bytes.
fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let digits: Vec<u8> = text
        .chars()
        .filter(|&c| c != '-')
        .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect::<Option<_>>()?;
    if digits.len() != 32 {
        return None;
    }
    let mut uuid = [0u8; 16];
    for (byte, pair) in uuid.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = pair[0] << 4 | pair[1];
    }
    Some(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID_BYTES: [u8; 16] =
        [0xf7, 0x28, 0x96, 0xff, 0x53, 0x3d, 0x4c, 0x89, 0x93, 0x4b, 0xb6, 0x4d, 0x42, 0x64, 0x33, 0x10];

    #[test]
    fn uuid_forms() {
        let line = "panic=1 console=ttyS0 root=UUID=f72896ff-533d-4c89-934b-b64d42643310 selinux=0";
        assert_eq!(parse_root(line), Ok(RootSpec::Uuid(UUID_BYTES)));
        // Dashes anywhere, upper case.
        assert_eq!(
            parse_root("root=UUID=-F72896FF533D4C89934BB64D4264331-0-"),
            Ok(RootSpec::Uuid(UUID_BYTES))
        );
        assert_eq!(RootSpec::Uuid(UUID_BYTES).to_string(), "UUID=f72896ff-533d-4c89-934b-b64d42643310");
    }

    #[test]
    fn bad_uuids_are_refused() {
        for bad in [
            "root=UUID=f72896ff",
            "root=UUID=f72896ff-533d-4c89-934b-b64d4264331000",
            "root=UUID=g72896ff533d4c89934bb64d42643310",
            "root=UUID=",
        ] {
            assert!(matches!(parse_root(bad), Err(CmdlineError::BadUuid(_))), "{bad}");
        }
    }

    #[test]
    fn device_forms() {
        assert_eq!(parse_root("root=/dev/sdb quiet"), Ok(RootSpec::Device("sdb".into())));
        assert!(parse_root("root=/dev/pmem0").unwrap().is_pmem());
        assert!(!parse_root("root=/dev/sda").unwrap().is_pmem());
        assert!(matches!(parse_root("root=/dev/"), Err(CmdlineError::Unknown(_))));
        assert!(matches!(parse_root("root=/dev/disk/by-uuid/x"), Err(CmdlineError::Unknown(_))));
        assert!(matches!(parse_root("root=LABEL=x"), Err(CmdlineError::Unknown(_))));
    }

    #[test]
    fn first_whole_word_wins() {
        assert_eq!(parse_root("root=/dev/sda root=/dev/sdb"), Ok(RootSpec::Device("sda".into())));
        assert_eq!(parse_root("guestfs_root=/dev/x root=/dev/vda"), Ok(RootSpec::Device("vda".into())));
        assert_eq!(parse_root("console=ttyS0 panic=1"), Err(CmdlineError::NoRoot));
        assert!(CmdlineError::NoRoot.to_string().contains("root=UUID="));
    }

    #[test]
    fn quiet_is_a_substring_test() {
        assert!(is_quiet("panic=1 quiet root=/dev/sda"));
        assert!(is_quiet("foo=notquiet"));
        assert!(!is_quiet("guestfs_verbose=1"));
    }
}
