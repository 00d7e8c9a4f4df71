//! Choosing the kernel and its modules directory, with supermin's rules
//! (docs/supermin-compat.md, "Kernel choice" and "Kernel version"):
//! `SUPERMIN_KERNEL` first, then `/lib/modules/*/vmlinuz`,
//! then `/boot`, the highest version winning; plus version detection from a
//! bzImage header and supermin's version ordering.
//!
//! Host inspection takes a `root` so tests can pass a fake tree. This module
//! only picks; linking or copying the kernel and reading the modules are
//! left to the build command and `image/initrd.rs`.
//!
//! Deliberate differences from supermin:
//! - an unreadable selected kernel (Ubuntu installs `/boot/vmlinuz-*` 0600)
//!   is an error saying how to fix it, where supermin picks it (version from
//!   the file name) and leaves qemu to fail later (docs/supermin-compat.md,
//!   "Kernel choice");
//! - an empty version string read from a kernel header counts as "unknown";
//! - a `SUPERMIN_KERNEL` that is ignored because its version is unknown is
//!   still silently skipped, as supermin does, but the reason is recorded in
//!   [`KernelChoice::reason`] for `-v`.

use std::cmp::Ordering;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::fnmatch::fnmatch;

/// Kernel files smaller than this are not bootable kernels (supermin's
/// filter: stubs, placeholders).
const MIN_KERNEL_SIZE: u64 = 10_000;

/// Errors from kernel selection.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KernelError {
    /// No candidate kernel with a modules directory was found.
    #[error(
        "no usable kernel (host cpu {host_cpu}); looked in: {}{}; install a kernel package{}, or set SUPERMIN_KERNEL and SUPERMIN_MODULES",
        .looked.join(", "),
        .rejected.iter().map(|r| format!("; skipped: {r}")).collect::<String>(),
        .package.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
    )]
    NoKernel {
        /// The host cpu the `/boot` patterns were built for.
        host_cpu: String,
        /// Where we looked, e.g. `$SUPERMIN_KERNEL (unset)`.
        looked: Vec<String>,
        /// Candidates that were found but refused, with the reason.
        rejected: Vec<String>,
        /// The host's kernel package, when the caller knows the package
        /// manager ([`KernelError::with_package_hints`]).
        package: Option<String>,
    },
    /// The selected kernel exists but this user cannot read it.
    #[error(
        "kernel {0} is not readable by this user ({cause}); run as root, or make it readable with `sudo chmod 0644 {0}`{1}",
        .path.display(),
        .keep.as_ref().map(|k| format!(" (keep that across kernel updates with `{k}`)")).unwrap_or_default()
    )]
    Unreadable {
        /// The kernel file.
        path: PathBuf,
        /// The error from opening it (not a `source`: the message says it).
        cause: std::io::Error,
        /// The package manager's way to keep the mode across updates, when
        /// the caller knows it ([`KernelError::with_package_hints`]).
        keep: Option<String>,
    },
    /// The selected kernel cannot be opened for another reason (typically a
    /// `SUPERMIN_KERNEL` naming a missing file).
    #[error("kernel {}: {cause}; check SUPERMIN_KERNEL, or unset it to use the newest kernel in /boot", .path.display())]
    Open {
        /// The kernel file.
        path: PathBuf,
        /// The error from opening it (not a `source`: the message says it).
        cause: std::io::Error,
    },
}

impl KernelError {
    /// Adds the host package manager's advice to the message: its kernel
    /// package, and how to keep a kernel file's mode across updates
    /// (`{path}` in `keep_readable` stands for the kernel file). Kernel
    /// selection itself does not know the package manager.
    pub(crate) fn with_package_hints(self, kernel_package: &str, keep_readable: Option<&str>) -> Self {
        match self {
            KernelError::NoKernel { host_cpu, looked, rejected, .. } => {
                KernelError::NoKernel { host_cpu, looked, rejected, package: Some(kernel_package.to_owned()) }
            }
            KernelError::Unreadable { path, cause, .. } => {
                let keep = keep_readable.map(|k| k.replace("{path}", &path.display().to_string()));
                KernelError::Unreadable { path, cause, keep }
            }
            other => other,
        }
    }
}

/// The `SUPERMIN_*` environment overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KernelEnv {
    /// `SUPERMIN_KERNEL`: the kernel file, used verbatim (not under `root`).
    pub(crate) kernel: Option<PathBuf>,
    /// `SUPERMIN_MODULES`: the modules directory, used verbatim.
    pub(crate) modules: Option<PathBuf>,
    /// `SUPERMIN_KERNEL_VERSION`: the kernel release string.
    pub(crate) version: Option<String>,
}

impl KernelEnv {
    /// Read `SUPERMIN_KERNEL`, `SUPERMIN_MODULES` and
    /// `SUPERMIN_KERNEL_VERSION`. A variable set to the empty string counts
    /// as set, as in supermin.
    pub(crate) fn from_env() -> Self {
        KernelEnv {
            kernel: std::env::var_os("SUPERMIN_KERNEL").map(PathBuf::from),
            modules: std::env::var_os("SUPERMIN_MODULES").map(PathBuf::from),
            version: std::env::var_os("SUPERMIN_KERNEL_VERSION").map(|v| v.to_string_lossy().into_owned()),
        }
    }
}

/// The kernel picked for the appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelChoice {
    /// The kernel file on the host (under `root`, or `SUPERMIN_KERNEL`
    /// verbatim). Checked to be readable.
    pub(crate) path: PathBuf,
    /// The kernel release (`uname -r` inside the appliance).
    pub(crate) version: String,
    /// The modules directory on the host. Not checked to exist when it came
    /// from the environment (as supermin).
    pub(crate) modules_dir: PathBuf,
    /// Why this kernel, a short phrase for `-v` ("newest bootable in /boot").
    pub(crate) reason: String,
}

/// Pick the kernel as supermin does (docs/supermin-compat.md, "Kernel
/// choice"), then check that the
/// chosen file can be opened for reading.
///
/// `root` prefixes `/lib/modules` and `/boot` (pass `/` for the real host);
/// `host_cpu` is e.g. `x86_64` (`std::env::consts::ARCH`).
///
/// Errors: [`KernelError::NoKernel`] listing where we looked and what was
/// skipped; [`KernelError::Unreadable`] / [`KernelError::Open`] when the
/// chosen file cannot be read.
pub(crate) fn select_kernel(
    env: &KernelEnv,
    root: &Path,
    host_cpu: &str,
) -> Result<KernelChoice, KernelError> {
    let mut looked = Vec::new();
    let mut rejected = Vec::new();
    let mut ignored_env = None;
    let mut choice = None;

    match &env.kernel {
        None => looked.push("$SUPERMIN_KERNEL (unset)".to_owned()),
        Some(kernel) => {
            looked.push(format!("$SUPERMIN_KERNEL ({})", kernel.display()));
            let version = env.version.clone().or_else(|| version_of_file(kernel, root));
            match version {
                Some(version) => {
                    let modules_dir =
                        env.modules.clone().unwrap_or_else(|| modules_root(root).join(&version));
                    choice = Some(KernelChoice {
                        path: kernel.clone(),
                        version,
                        modules_dir,
                        reason: "from SUPERMIN_KERNEL".to_owned(),
                    });
                }
                None => {
                    let why = format!(
                        "SUPERMIN_KERNEL={} ignored: cannot tell its version (set SUPERMIN_KERNEL_VERSION)",
                        kernel.display()
                    );
                    rejected.push(why.clone());
                    ignored_env = Some(why);
                }
            }
        }
    }
    if choice.is_none() {
        looked.push(format!("{}/*/vmlinuz", modules_root(root).display()));
        choice = from_lib_modules(root, host_cpu);
    }
    if choice.is_none() {
        looked.push(root.join("boot").display().to_string());
        choice = from_boot(env, root, host_cpu, &mut rejected);
    }
    let Some(mut choice) = choice else {
        return Err(KernelError::NoKernel { host_cpu: host_cpu.to_owned(), looked, rejected, package: None });
    };
    if let Some(why) = ignored_env {
        choice.reason = format!("{}; {why}", choice.reason);
    }
    check_readable(&choice.path)?;
    Ok(choice)
}

fn modules_root(root: &Path) -> PathBuf {
    root.join("lib/modules")
}

/// An actual open: permission bits alone do not say whether we may read
/// (root, capabilities, ACLs).
fn check_readable(path: &Path) -> Result<(), KernelError> {
    match std::fs::File::open(path) {
        Ok(_) => Ok(()),
        Err(cause) if cause.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(KernelError::Unreadable { path: path.to_owned(), cause, keep: None })
        }
        Err(cause) => Err(KernelError::Open { path: path.to_owned(), cause }),
    }
}

/// Names that are never bootable under qemu (supermin's filter).
fn is_unbootable(name: &str, host_cpu: &str) -> bool {
    name.contains("xen")
        || name.contains("zfcpdump")
        || name.contains("+debug")
        || (host_cpu.starts_with("arm") && name.contains("tegra"))
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Fedora-style `/lib/modules/VERSION/vmlinuz`: highest directory name
/// wins; `SUPERMIN_MODULES` is not consulted (docs/supermin-compat.md,
/// "Kernel choice", step 2).
fn from_lib_modules(root: &Path, host_cpu: &str) -> Option<KernelChoice> {
    let dir = modules_root(root);
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|v| !is_unbootable(v, host_cpu))
        .filter(|v| file_size(&dir.join(v).join("vmlinuz")) >= MIN_KERNEL_SIZE)
        .collect();
    found.sort_by(|a, b| compare_versions(b, a));
    let version = found.into_iter().next()?;
    Some(KernelChoice {
        path: dir.join(&version).join("vmlinuz"),
        modules_dir: dir.join(&version),
        version,
        reason: "newest in /lib/modules/*/vmlinuz".to_owned(),
    })
}

/// The `vmlinu?-*-MODEL` patterns for a host cpu (docs/supermin-compat.md,
/// "Kernel choice", step 3).
fn boot_patterns(host_cpu: &str) -> Vec<String> {
    let b = host_cpu.as_bytes();
    let models: Vec<String> = match host_cpu {
        "mips" | "mips64" => vec![host_cpu.to_owned(), "*-malta".to_owned()],
        "ppc" | "powerpc" | "powerpc64" => vec!["ppc".into(), "powerpc".into(), "powerpc64".into()],
        "sparc" | "sparc64" => vec!["sparc".into(), "sparc64".into()],
        "amd64" | "x86_64" => vec!["amd64".into(), "x86_64".into()],
        "parisc" | "parisc64" => vec!["hppa".into(), "hppa64".into()],
        "ppc64el" => vec!["powerpc64le".into()],
        "aarch64" => vec!["aarch64".into(), "arm64".into()],
        _ if b.len() >= 4 && b[0] == b'i' && b[2] == b'8' && b[3] == b'6' => vec!["?86".into()],
        _ if host_cpu.starts_with("armv7") => vec!["armmp".into()],
        _ => vec![host_cpu.to_owned()],
    };
    models.into_iter().map(|m| format!("vmlinu?-*-{m}")).collect()
}

/// `/boot/vmlinu?-*`: names for the host cpu first, any kernel otherwise,
/// tried from the highest version down; the first whose version is known
/// and whose `modules.dep` exists wins.
fn from_boot(
    env: &KernelEnv,
    root: &Path,
    host_cpu: &str,
    rejected: &mut Vec<String>,
) -> Option<KernelChoice> {
    let boot = root.join("boot");
    let names: Vec<String> =
        std::fs::read_dir(&boot).ok()?.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
    let candidates = |patterns: &[String]| -> Vec<String> {
        let mut v: Vec<String> = names
            .iter()
            .filter(|n| patterns.iter().any(|p| fnmatch(p.as_bytes(), n.as_bytes())))
            .filter(|n| !is_unbootable(n, host_cpu))
            .filter(|n| file_size(&boot.join(n)) >= MIN_KERNEL_SIZE)
            .cloned()
            .collect();
        v.sort_by(|a, b| compare_versions(b, a));
        v
    };
    let mut files = candidates(&boot_patterns(host_cpu));
    let mut reason = format!("newest bootable in /boot for {host_cpu}");
    if files.is_empty() {
        files = candidates(&["vmlinu?-*".to_owned()]);
        reason = format!("newest bootable in /boot (none named for {host_cpu})");
    }
    for name in files {
        let path = boot.join(&name);
        let Some(version) = version_of_file(&path, root) else {
            rejected.push(format!("{}: cannot tell its version", path.display()));
            continue;
        };
        let modules_dir = env.modules.clone().unwrap_or_else(|| modules_root(root).join(&version));
        if !has_modules_dep(&modules_dir) {
            rejected.push(format!(
                "{}: no {}/modules.dep (install the matching modules, or run depmod)",
                path.display(),
                modules_dir.display()
            ));
            continue;
        }
        return Some(KernelChoice { path, version, modules_dir, reason });
    }
    None
}

fn has_modules_dep(modules_dir: &Path) -> bool {
    std::fs::metadata(modules_dir.join("modules.dep")).map(|m| m.is_file()).unwrap_or(false)
}

/// Version of a kernel file: from its bzImage header, else from a
/// `vmlinuz-VERSION`/`vmlinux-VERSION` name when
/// `ROOT/lib/modules/VERSION/modules.dep` exists (this is how supermin still
/// names an unreadable kernel).
fn version_of_file(path: &Path, root: &Path) -> Option<String> {
    if let Some(v) = read_header(path).as_deref().and_then(version_from_image) {
        return Some(v);
    }
    let name = path.file_name()?.as_bytes();
    let rest = name.strip_prefix(b"vmlinuz-").or_else(|| name.strip_prefix(b"vmlinux-"))?;
    let version = std::str::from_utf8(rest).ok()?;
    has_modules_dep(&modules_root(root).join(version)).then(|| version.to_owned())
}

/// The first bytes of a file, enough for any bzImage version offset
/// (u16 offset + 0x200 + 132). `None` when it cannot be read.
fn read_header(path: &Path) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let file = crate::bounded::open_regular(path).ok()?;
    file.take(0x1_0000 + 0x200 + 132).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// The kernel release from an x86 bzImage boot header
/// (docs/supermin-compat.md, "Kernel version"):
/// `HdrS` at 514, boot protocol (u16 LE at 518) >= 0x1ff, version string at
/// (u16 LE at 526) + 0x200, ending at the first NUL, space, tab or newline
/// within 132 bytes.
///
/// Returns `None` for anything else, including an empty or non-UTF-8
/// version and a buffer too short to hold the 132 bytes.
pub(crate) fn version_from_image(bytes: &[u8]) -> Option<String> {
    if bytes.get(514..518)? != b"HdrS" {
        return None;
    }
    let le16 = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 2)?;
        Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    if le16(518)? < 0x1ff {
        return None;
    }
    let start = le16(526)? + 0x200;
    let field = bytes.get(start..start + 132)?;
    let end = field.iter().position(|b| matches!(b, 0 | b' ' | b'\t' | b'\n'))?;
    let version = std::str::from_utf8(&field[..end]).ok()?;
    (!version.is_empty()).then(|| version.to_owned())
}

/// One piece of a version string, in supermin's order: letters < numbers <
/// other characters (the order OCaml gives its polymorphic variants).
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Piece<'a> {
    Letters(&'a [u8]),
    Number(u64),
    Other(u8),
}

/// Split into runs of ASCII letters, runs of digits (compared numerically)
/// and single other bytes. A digit run too big for OCaml's 63-bit int is
/// compared as text, as supermin's `int_of_string` fallback does.
fn pieces(v: &str) -> Vec<Piece<'_>> {
    const OCAML_MAX_INT: u64 = (1 << 62) - 1;
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let run = |pred: fn(&u8) -> bool| b[i..].iter().take_while(|c| pred(c)).count();
        let digits = run(u8::is_ascii_digit);
        if digits > 0 {
            let text = &b[i..i + digits];
            let n = std::str::from_utf8(text).ok().and_then(|s| s.parse::<u64>().ok());
            out.push(match n {
                Some(n) if n <= OCAML_MAX_INT => Piece::Number(n),
                _ => Piece::Letters(text),
            });
            i += digits;
            continue;
        }
        let letters = run(u8::is_ascii_alphabetic);
        if letters > 0 {
            out.push(Piece::Letters(&b[i..i + letters]));
            i += letters;
            continue;
        }
        out.push(Piece::Other(b[i]));
        i += 1;
    }
    out
}

/// supermin's `compare_version` (docs/supermin-compat.md, "Kernel
/// version"): compare the piece lists
/// lexicographically, a shorter prefix first. `Greater` means `a` is newer.
pub(crate) fn compare_versions(a: &str, b: &str) -> Ordering {
    pieces(a).cmp(&pieces(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn ci() -> bool {
        std::env::var("CI").as_deref() == Ok("true")
    }

    /// A fake bzImage: `HdrS`, protocol 0x20f, version at 0x3200.
    fn fake_image(version: &str) -> Vec<u8> {
        let mut b = vec![0u8; 16_000];
        b[514..518].copy_from_slice(b"HdrS");
        b[518..520].copy_from_slice(&0x020fu16.to_le_bytes());
        b[526..528].copy_from_slice(&0x3000u16.to_le_bytes());
        let text = format!("{version} (fake@builder) #1 SMP");
        b[0x3200..0x3200 + text.len()].copy_from_slice(text.as_bytes());
        b
    }

    struct Fake {
        dir: tempfile::TempDir,
    }

    impl Fake {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir_all(dir.path().join("boot")).unwrap();
            fs::create_dir_all(dir.path().join("lib/modules")).unwrap();
            Fake { dir }
        }
        fn root(&self) -> &Path {
            self.dir.path()
        }
        fn boot(&self, name: &str, version: &str) -> PathBuf {
            let p = self.root().join("boot").join(name);
            fs::write(&p, fake_image(version)).unwrap();
            p
        }
        fn modules(&self, version: &str) -> PathBuf {
            let d = self.root().join("lib/modules").join(version);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("modules.dep"), "").unwrap();
            d
        }
        /// Selects as a Debian host's build does: with dpkg's hints.
        fn select(&self, env: &KernelEnv) -> Result<KernelChoice, KernelError> {
            let dpkg = crate::package::handler_named("dpkg").unwrap();
            select_kernel(env, self.root(), "x86_64")
                .map_err(|e| e.with_package_hints(dpkg.kernel_package, dpkg.keep_kernel_readable))
        }
    }

    #[test]
    fn version_compare_like_supermin() {
        use Ordering::*;
        assert_eq!(compare_versions("6.1.0-56-amd64", "6.1.0-9-amd64"), Greater);
        assert_eq!(compare_versions("6.10.0", "6.9.0"), Greater);
        assert_eq!(compare_versions("6.1", "6.1.0"), Less, "shorter prefix first");
        assert_eq!(compare_versions("6.1.0", "6.1.0"), Equal);
        assert_eq!(compare_versions("vmlinuz-6.1.0-56-amd64", "vmlinuz-6.1.0-9-amd64"), Greater);
        // letters < numbers < other characters
        assert_eq!(compare_versions("1a", "11"), Less);
        assert_eq!(compare_versions("1.0", "1a"), Greater);
        assert_eq!(compare_versions("1.-", "1.2"), Greater);
        assert_eq!(compare_versions("1-", "12"), Less, "numbers compare first");
        // Letters compare as text, case-sensitively (bytewise).
        assert_eq!(compare_versions("rc", "rca"), Less);
        assert_eq!(compare_versions("B", "a"), Less);
        // Leading zeros compare numerically.
        assert_eq!(compare_versions("007", "7"), Equal);
        // Digit runs past OCaml's int range fall back to text (letters).
        assert_eq!(compare_versions("99999999999999999999", "1"), Less);
    }

    #[test]
    fn version_from_bzimage_header() {
        assert_eq!(version_from_image(&fake_image("6.1.0-56-amd64")).as_deref(), Some("6.1.0-56-amd64"));
        let mut b = fake_image("6.1.0-56-amd64");
        b[518..520].copy_from_slice(&0x01feu16.to_le_bytes());
        assert_eq!(version_from_image(&b), None, "old boot protocol");
        let mut b = fake_image("x");
        b[514] = b'h';
        assert_eq!(version_from_image(&b), None, "no HdrS");
        assert_eq!(version_from_image(&fake_image("x")[..0x3200 + 100]), None, "short read");
        let mut b = fake_image("");
        b[0x3200..0x3200 + 132].fill(b'a');
        assert_eq!(version_from_image(&b), None, "no terminator within 132 bytes");
        assert_eq!(version_from_image(&fake_image("")), None, "empty version");
        assert_eq!(version_from_image(b"short"), None);
    }

    #[test]
    fn boot_picks_highest_version_with_modules() {
        let f = Fake::new();
        f.boot("vmlinuz-6.1.0-9-amd64", "6.1.0-9-amd64");
        f.boot("vmlinuz-6.1.0-56-amd64", "6.1.0-56-amd64");
        // Highest of all, but its modules are missing: skipped.
        f.boot("vmlinuz-6.2.0-1-amd64", "6.2.0-1-amd64");
        f.boot("vmlinuz-9.0.0-1-xen-amd64", "9.0.0-1-xen-amd64");
        fs::write(f.root().join("boot/vmlinuz-9.9.9-tiny-amd64"), b"stub").unwrap();
        f.modules("6.1.0-9-amd64");
        f.modules("6.1.0-56-amd64");
        f.modules("9.0.0-1-xen-amd64");
        let c = f.select(&KernelEnv::default()).unwrap();
        assert_eq!(c.path, f.root().join("boot/vmlinuz-6.1.0-56-amd64"));
        assert_eq!(c.version, "6.1.0-56-amd64");
        assert_eq!(c.modules_dir, f.root().join("lib/modules/6.1.0-56-amd64"));
        assert_eq!(c.reason, "newest bootable in /boot for x86_64");
    }

    #[test]
    fn boot_falls_back_to_any_vmlinuz_and_to_the_file_name() {
        let f = Fake::new();
        // Fedora-style name: no "-x86_64" suffix after a dash, so the cpu
        // patterns miss and the plain vmlinu?-* fallback finds it.
        let k = f.root().join("boot/vmlinuz-6.5.6-300.fc39.x86_64");
        fs::write(&k, vec![0u8; 12_000]).unwrap(); // no header: version from name
        f.modules("6.5.6-300.fc39.x86_64");
        let c = f.select(&KernelEnv::default()).unwrap();
        assert_eq!(c.path, k);
        assert_eq!(c.version, "6.5.6-300.fc39.x86_64");
        assert_eq!(c.reason, "newest bootable in /boot (none named for x86_64)");
    }

    #[test]
    fn lib_modules_vmlinuz_beats_boot_and_ignores_supermin_modules() {
        let f = Fake::new();
        f.boot("vmlinuz-7.0.0-1-amd64", "7.0.0-1-amd64");
        f.modules("7.0.0-1-amd64");
        for v in ["6.5.6-300.fc39.x86_64", "6.8.0-1.fc40.x86_64", "6.9.0-1.fc40.x86_64+debug"] {
            let d = f.modules(v);
            fs::write(d.join("vmlinuz"), vec![0u8; 12_000]).unwrap();
        }
        let env = KernelEnv { modules: Some("/elsewhere".into()), ..KernelEnv::default() };
        let c = f.select(&env).unwrap();
        assert_eq!(c.version, "6.8.0-1.fc40.x86_64");
        assert_eq!(c.path, f.root().join("lib/modules/6.8.0-1.fc40.x86_64/vmlinuz"));
        assert_eq!(c.modules_dir, f.root().join("lib/modules/6.8.0-1.fc40.x86_64"));
    }

    #[test]
    fn env_override_and_silent_fallback() {
        let f = Fake::new();
        f.boot("vmlinuz-6.1.0-56-amd64", "6.1.0-56-amd64");
        f.modules("6.1.0-56-amd64");
        let mine = f.root().join("mykernel");
        fs::write(&mine, fake_image("6.6.6-custom")).unwrap();
        let env = KernelEnv { kernel: Some(mine.clone()), ..KernelEnv::default() };
        let c = f.select(&env).unwrap();
        assert_eq!((c.path.clone(), c.version.as_str()), (mine.clone(), "6.6.6-custom"));
        assert_eq!(c.modules_dir, f.root().join("lib/modules/6.6.6-custom"), "not checked");
        assert_eq!(c.reason, "from SUPERMIN_KERNEL");
        let env = KernelEnv {
            kernel: Some(mine.clone()),
            modules: Some("/m".into()),
            version: Some("1.2.3".into()),
        };
        let c = f.select(&env).unwrap();
        assert_eq!((c.version.as_str(), c.modules_dir.as_path()), ("1.2.3", Path::new("/m")));
        // Version unknown (no header, name gives nothing): supermin ignores
        // SUPERMIN_KERNEL silently; we fall back too but say why.
        fs::write(&mine, vec![0u8; 12_000]).unwrap();
        let env = KernelEnv { kernel: Some(mine), ..KernelEnv::default() };
        let c = f.select(&env).unwrap();
        assert_eq!(c.version, "6.1.0-56-amd64");
        assert!(c.reason.starts_with("newest bootable in /boot for x86_64; SUPERMIN_KERNEL="));
        assert!(c.reason.contains("set SUPERMIN_KERNEL_VERSION"), "{}", c.reason);
    }

    #[test]
    fn no_kernel_error_says_where_and_what_to_do() {
        let f = Fake::new();
        f.boot("vmlinuz-6.2.0-1-amd64", "6.2.0-1-amd64"); // no modules
        let e = f.select(&KernelEnv::default()).unwrap_err().to_string();
        let r = f.root().display().to_string();
        assert_eq!(
            e.replace(&r, "ROOT"),
            "no usable kernel (host cpu x86_64); looked in: $SUPERMIN_KERNEL (unset), ROOT/lib/modules/*/vmlinuz, ROOT/boot; skipped: ROOT/boot/vmlinuz-6.2.0-1-amd64: no ROOT/lib/modules/6.2.0-1-amd64/modules.dep (install the matching modules, or run depmod); install a kernel package (linux-image-amd64), or set SUPERMIN_KERNEL and SUPERMIN_MODULES"
        );
        let empty = tempfile::tempdir().unwrap();
        let e = select_kernel(&KernelEnv::default(), empty.path(), "aarch64").unwrap_err();
        assert!(matches!(e, KernelError::NoKernel { .. }));
    }

    #[test]
    fn unreadable_kernel_is_an_error_with_the_fix() {
        let f = Fake::new();
        let k = f.boot("vmlinuz-6.1.0-56-amd64", "6.1.0-56-amd64");
        f.modules("6.1.0-56-amd64");
        fs::set_permissions(&k, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::File::open(&k).is_ok() {
            // root (as in CI) or CAP_DAC_OVERRIDE reads a 0000 file anyway.
            eprintln!("skipping: running with privileges that can read a mode 0000 file");
            return;
        }
        let e = f.select(&KernelEnv::default()).unwrap_err();
        assert!(matches!(&e, KernelError::Unreadable { path, .. } if path == &k), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("not readable by this user"), "{msg}");
        assert!(msg.contains(&format!("sudo chmod 0644 {}", k.display())), "{msg}");
        assert!(msg.contains("dpkg-statoverride --update --add root root 0644"), "{msg}");
    }

    #[test]
    fn missing_env_kernel_is_an_open_error() {
        let f = Fake::new();
        let env = KernelEnv {
            kernel: Some(f.root().join("nope")),
            version: Some("1.0".into()),
            ..KernelEnv::default()
        };
        let e = f.select(&env).unwrap_err();
        assert!(matches!(e, KernelError::Open { .. }), "{e:?}");
        assert!(e.to_string().contains("check SUPERMIN_KERNEL"));
    }

    #[test]
    fn cpu_patterns() {
        assert_eq!(boot_patterns("x86_64"), ["vmlinu?-*-amd64", "vmlinu?-*-x86_64"]);
        assert_eq!(boot_patterns("i686"), ["vmlinu?-*-?86"]);
        assert_eq!(boot_patterns("armv7l"), ["vmlinu?-*-armmp"]);
        assert_eq!(boot_patterns("riscv64"), ["vmlinu?-*-riscv64"]);
        assert!(fnmatch(b"vmlinu?-*-amd64", b"vmlinuz-6.1.0-56-amd64"));
        assert!(!fnmatch(b"vmlinu?-*-x86_64", b"vmlinuz-6.5.6-300.fc39.x86_64"));
    }

    /// The real host: `/boot`'s kernel version from its header must agree
    /// with its file name (Debian: vmlinuz-RELEASE), and selection works.
    #[test]
    fn real_boot_kernel() {
        let kernels: Vec<PathBuf> = fs::read_dir("/boot")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.as_bytes().starts_with(b"vmlinuz-")))
            .collect();
        if kernels.is_empty() {
            assert!(!ci(), "a kernel in /boot is required under CI (install linux-image-amd64)");
            eprintln!("skipping: no /boot/vmlinuz-* on this host");
            return;
        }
        let mut checked = 0;
        for k in &kernels {
            let Some(header) = read_header(k) else {
                eprintln!("{}: unreadable, not checked", k.display());
                continue;
            };
            let v = version_from_image(&header).expect("a bzImage version");
            let name = k.file_name().unwrap().to_string_lossy().into_owned();
            assert_eq!(format!("vmlinuz-{v}"), name);
            checked += 1;
        }
        if checked == 0 {
            assert!(!ci(), "no readable kernel in /boot under CI");
            return;
        }
        match select_kernel(&KernelEnv::default(), Path::new("/"), std::env::consts::ARCH) {
            Ok(c) => assert!(c.modules_dir.join("modules.dep").is_file(), "{c:?}"),
            Err(e) => assert!(!ci(), "kernel selection failed under CI: {e}"),
        }
    }
}
