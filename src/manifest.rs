//! What an appliance was built from (`manifest.toml`) and the fingerprint
//! that says whether two builds would be the same.
//!
//! The fingerprint is a sha256 over a canonical, line-oriented rendering of
//! everything that decides the appliance's content: the format version of
//! this tool's output, the options, each input file's content hash, the
//! kernel (version, path, content hash, modules.dep hash) and every package
//! of the closure with version and architecture. It deliberately leaves out
//! file dates, the tool's own version string (only [`FORMAT_VERSION`]) and
//! anything about the build run (time, host name), so two builds from the
//! same host state share a fingerprint, and the root image's UUID is derived
//! from it. The manifest records all the parts so that `check` can say *what*
//! changed, not only *that* something did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the appliance layout we write. Bump it when the same inputs
/// would produce different output, so older appliances read as stale.
pub const FORMAT_VERSION: u32 = 1;

/// File name of the manifest inside an appliance directory.
pub const MANIFEST_NAME: &str = "manifest.toml";

/// Errors reading or writing a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The manifest path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a manifest we understand.
    #[error("{path}: not a valid guestfs-appliance manifest ({message}); rebuild the appliance")]
    Parse {
        /// The manifest path.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
}

/// One package of the closure.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ManifestPackage {
    /// Package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub arch: String,
}

/// One input file with its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestInput {
    /// Path of the input file (or `<embedded>/NAME`).
    pub path: String,
    /// What supermin-style kind it was classified as.
    pub kind: String,
    /// Hex sha256 of its bytes.
    pub sha256: String,
}

/// The kernel the appliance boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestKernel {
    /// Kernel release, e.g. `6.1.0-56-amd64`.
    pub version: String,
    /// Host path it was copied from.
    pub path: String,
    /// Hex sha256 of the kernel image.
    pub sha256: String,
    /// Host modules directory copied into the image.
    pub modules_dir: String,
    /// Hex sha256 of `modules.dep` (changes whenever the module set does).
    pub modules_dep_sha256: String,
}

/// Options that change the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOptions {
    /// Root image size in bytes.
    pub size: u64,
    /// CPU the kernel was chosen for.
    pub host_cpu: String,
    /// Host root the packages and files came from.
    pub root: String,
    /// Whether missing packages were errors.
    pub strict: bool,
    /// Packages added by the config file.
    #[serde(default)]
    pub extra_packages: Vec<String>,
    /// Exclude patterns added by the config file.
    #[serde(default)]
    pub extra_excludes: Vec<String>,
}

/// Sizes of what was written (informational; not fingerprinted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOutput {
    /// Root image UUID.
    pub root_uuid: String,
    /// Files and directories in the root image.
    pub files: u64,
    /// Bytes allocated in the root image file.
    pub root_allocated_bytes: u64,
    /// Size of the initrd in bytes.
    pub initrd_bytes: u64,
    /// Kernel modules in the initrd.
    pub initrd_modules: u64,
}

/// The content of `manifest.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version ([`FORMAT_VERSION`] when written).
    pub format_version: u32,
    /// Version of the tool that wrote it.
    pub tool_version: String,
    /// Hex sha256 over the fingerprinted parts.
    pub fingerprint: String,
    /// Seconds since the epoch when the build finished (not fingerprinted).
    pub built_at: i64,
    /// Package handler used (`dpkg`).
    pub package_handler: String,
    /// Build options.
    pub options: ManifestOptions,
    /// Kernel.
    pub kernel: ManifestKernel,
    /// Input files in walk order.
    pub inputs: Vec<ManifestInput>,
    /// hostfiles patterns, in order.
    pub hostfiles: Vec<String>,
    /// Names requested by the inputs that were not installed.
    pub missing_packages: Vec<String>,
    /// The resolved closure, sorted.
    pub packages: Vec<ManifestPackage>,
    /// What was written.
    pub output: ManifestOutput,
}

impl Manifest {
    /// The canonical text the fingerprint hashes. One fact per line, fixed
    /// order, so the same facts always give the same bytes.
    pub fn fingerprint_text(&self) -> String {
        let mut t = String::new();
        let mut line = |k: &str, v: &str| {
            t.push_str(k);
            t.push('\t');
            t.push_str(v);
            t.push('\n');
        };
        line("format", &self.format_version.to_string());
        line("handler", &self.package_handler);
        line("option.size", &self.options.size.to_string());
        line("option.host_cpu", &self.options.host_cpu);
        line("option.root", &self.options.root);
        line("option.strict", &self.options.strict.to_string());
        for p in &self.options.extra_packages {
            line("option.extra_package", p);
        }
        for e in &self.options.extra_excludes {
            line("option.extra_exclude", e);
        }
        line("kernel.version", &self.kernel.version);
        line("kernel.path", &self.kernel.path);
        line("kernel.sha256", &self.kernel.sha256);
        line("kernel.modules_dir", &self.kernel.modules_dir);
        line("kernel.modules_dep", &self.kernel.modules_dep_sha256);
        for i in &self.inputs {
            line("input", &format!("{}\t{}\t{}", i.path, i.kind, i.sha256));
        }
        for h in &self.hostfiles {
            line("hostfiles", h);
        }
        for p in &self.packages {
            line("package", &format!("{}\t{}\t{}", p.name, p.version, p.arch));
        }
        t
    }

    /// Hex sha256 of [`Manifest::fingerprint_text`].
    pub fn compute_fingerprint(&self) -> String {
        hex(&Sha256::digest(self.fingerprint_text().as_bytes()))
    }

    /// The root image UUID for this fingerprint: the first 16 bytes of
    /// sha256("root-uuid" + fingerprint), marked as an RFC 4122 version 4
    /// (random) UUID so tools that check the variant accept it.
    pub fn root_uuid(&self) -> [u8; 16] {
        let digest = Sha256::digest(format!("root-uuid\n{}", self.fingerprint).as_bytes());
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&digest[..16]);
        uuid[6] = (uuid[6] & 0x0f) | 0x40;
        uuid[8] = (uuid[8] & 0x3f) | 0x80;
        uuid
    }

    /// Render as TOML.
    pub fn to_toml(&self) -> String {
        let header = "# Written by guestfs-appliance. Describes what this appliance was built\n\
                      # from; `guestfs-appliance check` compares it with the host.\n";
        match toml::to_string_pretty(self) {
            Ok(body) => format!("{header}{body}"),
            // Serialising plain strings and numbers cannot fail; keep a
            // readable fallback rather than a panic.
            Err(e) => format!("{header}# serialisation failed: {e}\n"),
        }
    }

    /// Read `DIR/manifest.toml`.
    pub fn read(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_NAME);
        let text = std::fs::read_to_string(&path)
            .map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        toml::from_str(&text).map_err(|e| ManifestError::Parse { path, message: e.message().to_string() })
    }

    /// Package versions keyed by `name:arch`, for comparisons.
    pub fn package_map(&self) -> BTreeMap<String, &str> {
        self.packages.iter().map(|p| (format!("{}:{}", p.name, p.arch), p.version.as_str())).collect()
    }
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex sha256 of a byte slice.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Hex sha256 of a file's content, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            tool_version: "0.1.0".into(),
            fingerprint: String::new(),
            built_at: 1,
            package_handler: "dpkg".into(),
            options: ManifestOptions {
                size: 4 << 30,
                host_cpu: "x86_64".into(),
                root: "/".into(),
                strict: false,
                extra_packages: vec![],
                extra_excludes: vec![],
            },
            kernel: ManifestKernel {
                version: "6.1.0-56-amd64".into(),
                path: "/boot/vmlinuz-6.1.0-56-amd64".into(),
                sha256: "aa".into(),
                modules_dir: "/lib/modules/6.1.0-56-amd64".into(),
                modules_dep_sha256: "bb".into(),
            },
            inputs: vec![ManifestInput { path: "/x/packages".into(), kind: "packages".into(), sha256: "cc".into() }],
            hostfiles: vec!["/etc/ld.so.cache".into()],
            missing_packages: vec!["xfsprogs".into()],
            packages: vec![ManifestPackage { name: "bash".into(), version: "5.2".into(), arch: "amd64".into() }],
            output: ManifestOutput::default(),
        }
    }

    #[test]
    fn toml_round_trip() {
        let mut m = sample();
        m.fingerprint = m.compute_fingerprint();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST_NAME), m.to_toml()).unwrap();
        assert_eq!(Manifest::read(dir.path()).unwrap(), m);
    }

    #[test]
    fn fingerprint_ignores_build_facts_but_not_versions() {
        let a = sample();
        let mut b = sample();
        b.built_at = 99;
        b.tool_version = "9.9.9".into();
        b.output.files = 7;
        assert_eq!(a.compute_fingerprint(), b.compute_fingerprint());
        b.packages[0].version = "5.3".into();
        assert_ne!(a.compute_fingerprint(), b.compute_fingerprint());
    }

    #[test]
    fn uuid_is_version_4_and_stable() {
        let mut m = sample();
        m.fingerprint = m.compute_fingerprint();
        let u = m.root_uuid();
        assert_eq!(u, m.root_uuid());
        assert_eq!(u[6] >> 4, 4);
        assert_eq!(u[8] >> 6, 2);
    }

    #[test]
    fn unreadable_manifest_says_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST_NAME), "not = [toml").unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("rebuild"), "{err}");
    }
}
