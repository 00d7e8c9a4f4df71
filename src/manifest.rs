//! What an appliance was built from (`manifest.toml`) and the fingerprint
//! that says whether two builds would be the same.
//!
//! The fingerprint is a sha256 over a canonical, line-oriented rendering of
//! everything that decides the appliance's content: the format version of
//! this tool's output, the options (including the timestamp given to
//! entries whose host times are volatile), each input file's content hash,
//! the kernel (version, path, content hash, modules.dep hash and a digest of
//! the modules tree), every package of the closure with version and
//! architecture, and what the hostfiles patterns matched with each file's
//! content hash and the metadata the image copies (see [`crate::hostdata`]).
//! The appliance's `kernel`, `initrd` and `root` are a pure function of it.
//! It deliberately leaves out host file dates that ordinary activity moves
//! (the image does not copy them), the tool's own version string (only
//! [`FORMAT_VERSION`]) and anything about the build run (time, host name), so
//! two builds from the same host state share a fingerprint, and the root
//! image's UUID is derived from it. The manifest records all the parts so
//! that `check` can say *what* changed, not only *that* something did, and
//! the options so that `check DIR` can ask about the appliance DIR holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the appliance layout we write. Bump it when the same inputs
/// would produce different output, so older appliances read as stale.
///
/// 2: host times normalized (issue 7); hostfiles, the modules tree and the
/// timestamp fingerprinted; options record how the inputs were chosen.
/// 3: the manifest records each output's size and digest (`[[outputs]]`,
/// issue 8), so `check` can tell a damaged appliance from a fresh one.
/// Manifests of formats 1 and 2 still read (the new fields have defaults);
/// they are stale by their format, and without output records damage to
/// their files cannot be detected.
/// 4: the initrd loads the drivers of libguestfs's devices and the root
/// stack (29 modules) instead of supermin's 52 (issue 12).
/// 5: the `kernel` file is the uncompressed vmlinux where possible
/// (`options.kernel_format`, `output.kernel_image`; issue 12).
pub const FORMAT_VERSION: u32 = 5;

/// File name of the manifest inside an appliance directory.
pub(crate) const MANIFEST_NAME: &str = "manifest.toml";

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
    pub(crate) version: String,
    /// Architecture (`amd64`, `all`, ...).
    pub(crate) arch: String,
}

/// One input file with its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManifestInput {
    /// Path of the input file (or `<embedded>/NAME`).
    pub(crate) path: String,
    /// What supermin-style kind it was classified as.
    pub(crate) kind: String,
    /// Hex sha256 of its bytes.
    pub(crate) sha256: String,
}

/// The kernel the appliance boots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestKernel {
    /// Kernel release, e.g. `6.1.0-56-amd64`.
    pub version: String,
    /// Host path it was copied (or decompressed) from.
    pub path: String,
    /// Hex sha256 of the kernel image.
    pub(crate) sha256: String,
    /// Host modules directory copied into the image.
    pub(crate) modules_dir: String,
    /// Hex sha256 of `modules.dep` (changes whenever the module set does).
    pub(crate) modules_dep_sha256: String,
    /// Hex digest of the modules tree as the image copies it (see
    /// [`crate::hostdata::modules_tree_digest`]); empty before format 2.
    #[serde(default)]
    pub(crate) modules_tree_sha256: String,
}

/// How the inputs of a build were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum InputChoice {
    /// No inputs named: libguestfs's installed supermin.d, else the built-in
    /// minimal appliance (decided again at every build and check).
    Default,
    /// The built-in minimal appliance (`--minimal`).
    Minimal,
    /// Paths named with `--input` or the config file's `inputs`.
    Given,
}

/// What the appliance's `kernel` file is (`--kernel-format`,
/// config `appliance.kernel_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelFormat {
    /// The uncompressed ELF where the host CPU is x86_64 and the kernel
    /// has a PVH entry point and a compression we undo; else a copy.
    #[default]
    Auto,
    /// The uncompressed ELF (`vmlinux`), which qemu boots through its PVH
    /// entry point without the guest decompressing it
    /// (the module `image::vmlinux` says why); an error where that is not
    /// possible.
    Uncompressed,
    /// The host's kernel file as it is, as supermin copies it.
    Copy,
}

impl KernelFormat {
    /// The name in manifests, the config file and on the command line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            KernelFormat::Auto => "auto",
            KernelFormat::Uncompressed => "uncompressed",
            KernelFormat::Copy => "copy",
        }
    }
}

/// Options that change the output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOptions {
    /// Root image size in bytes.
    pub(crate) size: u64,
    /// CPU the kernel was chosen for.
    pub(crate) host_cpu: String,
    /// Host root the packages and files came from.
    pub(crate) root: String,
    /// Whether missing packages were errors.
    pub(crate) strict: bool,
    /// Packages added by the config file.
    #[serde(default)]
    pub(crate) extra_packages: Vec<String>,
    /// Exclude patterns added by the config file.
    #[serde(default)]
    pub(crate) extra_excludes: Vec<String>,
    /// How the inputs were chosen; `None` in manifests older than format 2
    /// (see [`Manifest::input_request`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) inputs: Option<InputChoice>,
    /// The input directories or files read, absolute; empty for the
    /// built-in minimal appliance.
    #[serde(default)]
    pub(crate) input_paths: Vec<String>,
    /// `SOURCE_DATE_EPOCH` of the build, if it was set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_date_epoch: Option<i64>,
    /// Seconds since the epoch given to every entry whose host times are
    /// not kept (directories, symlinks, hostfiles, invented entries):
    /// `SOURCE_DATE_EPOCH`, else the newest input file's mtime.
    #[serde(default)]
    pub timestamp: i64,
    /// What the `kernel` file was asked to be; before format 5 always a
    /// copy, read as `auto` (what a rebuild by this version makes).
    #[serde(default)]
    pub(crate) kernel_format: KernelFormat,
}

/// One path a hostfiles pattern matched, with what the image copies of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHostfile {
    /// Path in the appliance (the host path under the root).
    pub path: String,
    /// `file`, `directory`, `symlink`, `char-device`, `block-device`,
    /// `fifo`, `socket`, or `missing` (it vanished after the match).
    pub(crate) kind: String,
    /// Permission bits (`mode & 0o7777`).
    pub(crate) mode: u32,
    /// Owner.
    pub(crate) uid: u32,
    /// Group.
    pub(crate) gid: u32,
    /// Regular files: hex sha256 of the content (`unreadable` if it cannot
    /// be read: the image then holds an empty file). Symlinks: the target.
    /// Devices: the device number. Empty otherwise.
    pub(crate) content: String,
}

/// Sizes of what was written (informational; not fingerprinted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOutput {
    /// Root image UUID.
    pub root_uuid: String,
    /// Files and directories in the root image.
    pub(crate) files: u64,
    /// Bytes allocated in the root image file.
    pub(crate) root_allocated_bytes: u64,
    /// Size of the initrd in bytes.
    pub(crate) initrd_bytes: u64,
    /// Kernel modules in the initrd.
    pub(crate) initrd_modules: u64,
    /// What the `kernel` file is: `vmlinux` (the uncompressed ELF, booted
    /// through its PVH entry point) or `copy` (the host's file); empty
    /// before format 5.
    #[serde(default)]
    pub kernel_image: String,
}

/// One file of the appliance as written: what `check` compares it with.
/// Not fingerprinted (the files are a function of the fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name in the appliance directory (`kernel`, `initrd`, `root`).
    pub name: String,
    /// Length in bytes (the apparent size; `root` is sparse).
    pub size: u64,
    /// How [`ManifestFile::hash`] is computed: [`crate::digest::SHA256`]
    /// or a hole-skipping digest ([`crate::digest::SPARSE_XXH3`], formerly
    /// [`crate::digest::SPARSE_SHA256`]).
    pub(crate) algorithm: String,
    /// The digest, lower-case hex.
    pub hash: String,
}

/// The content of `manifest.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version ([`FORMAT_VERSION`] when written).
    pub format_version: u32,
    /// Version of the tool that wrote it.
    pub(crate) tool_version: String,
    /// Hex sha256 over the fingerprinted parts.
    pub fingerprint: String,
    /// Seconds since the epoch when the build finished (not fingerprinted).
    pub(crate) built_at: i64,
    /// Package handler used (`dpkg`).
    pub(crate) package_handler: String,
    /// Build options.
    pub options: ManifestOptions,
    /// Kernel.
    pub kernel: ManifestKernel,
    /// Input files in walk order.
    pub(crate) inputs: Vec<ManifestInput>,
    /// hostfiles patterns, in order.
    pub(crate) hostfiles: Vec<String>,
    /// What the hostfiles patterns matched, in copy order.
    #[serde(default)]
    pub host_files: Vec<ManifestHostfile>,
    /// Names requested by the inputs that were not installed.
    pub(crate) missing_packages: Vec<String>,
    /// The resolved closure, sorted.
    pub packages: Vec<ManifestPackage>,
    /// What was written.
    pub output: ManifestOutput,
    /// The boot files with their sizes and digests; empty before format 3
    /// (and in a plan, before anything is written).
    #[serde(default)]
    pub outputs: Vec<ManifestFile>,
}

impl Manifest {
    /// The canonical text the fingerprint hashes. One fact per line, fixed
    /// order, so the same facts always give the same bytes.
    pub(crate) fn fingerprint_text(&self) -> String {
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
        line("option.timestamp", &self.options.timestamp.to_string());
        line("option.kernel_format", self.options.kernel_format.name());
        line("kernel.version", &self.kernel.version);
        line("kernel.path", &self.kernel.path);
        line("kernel.sha256", &self.kernel.sha256);
        line("kernel.modules_dir", &self.kernel.modules_dir);
        line("kernel.modules_dep", &self.kernel.modules_dep_sha256);
        line("kernel.modules_tree", &self.kernel.modules_tree_sha256);
        for i in &self.inputs {
            line("input", &format!("{}\t{}\t{}", i.path, i.kind, i.sha256));
        }
        for h in &self.hostfiles {
            line("hostfiles", h);
        }
        for h in &self.host_files {
            line(
                "hostfile",
                &format!("{}\t{}\t{:o}\t{}\t{}\t{}", h.path, h.kind, h.mode, h.uid, h.gid, h.content),
            );
        }
        for p in &self.packages {
            line("package", &format!("{}\t{}\t{}", p.name, p.version, p.arch));
        }
        t
    }

    /// Hex sha256 of [`Manifest::fingerprint_text`].
    pub fn compute_fingerprint(&self) -> String {
        crate::digest::sha256_hex(self.fingerprint_text().as_bytes())
    }

    /// The root image UUID for this fingerprint: the first 16 bytes of
    /// sha256("root-uuid" + fingerprint), marked as an RFC 4122 version 4
    /// (random) UUID so tools that check the variant accept it.
    pub(crate) fn root_uuid(&self) -> [u8; 16] {
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
        let text = crate::bounded::read_to_string(&path, crate::bounded::TEXT_MAX)
            .map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        toml::from_str(&text).map_err(|e| ManifestError::Parse { path, message: e.message().to_string() })
    }

    /// How this appliance's inputs were chosen and the paths given, for
    /// asking about it again. Manifests older than format 2 do not record
    /// it: all-embedded inputs were the minimal appliance, otherwise the
    /// directories holding the input files are taken as given.
    pub(crate) fn input_request(&self) -> (InputChoice, Vec<PathBuf>) {
        match self.options.inputs {
            Some(choice) => (choice, self.options.input_paths.iter().map(PathBuf::from).collect()),
            None if self.inputs.iter().all(|i| i.path.starts_with("<embedded>")) => {
                (InputChoice::Minimal, Vec::new())
            }
            None => {
                let mut dirs: Vec<PathBuf> = Vec::new();
                for i in &self.inputs {
                    let dir = Path::new(&i.path).parent().map(Path::to_path_buf).unwrap_or_default();
                    if !dirs.contains(&dir) {
                        dirs.push(dir);
                    }
                }
                (InputChoice::Given, dirs)
            }
        }
    }

    /// The inputs as people name them: `minimal` for the built-in
    /// appliance, else the paths read, comma-separated.
    pub(crate) fn inputs_label(&self) -> String {
        let (_, paths) = self.input_request();
        if paths.is_empty() {
            return "minimal".into();
        }
        paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    }

    /// Package versions keyed by the handler's spelling (dpkg: `name:arch`;
    /// rpm and pacman: `name`, `name.arch` when the name has two arches
    /// here or in `other`), for comparisons with `other`.
    pub(crate) fn package_map(&self, other: &Manifest) -> BTreeMap<String, &str> {
        fn pairs(m: &Manifest) -> Vec<(&str, &str)> {
            m.packages.iter().map(|p| (p.name.as_str(), p.arch.as_str())).collect()
        }
        let labels = crate::package::package_labels(&self.package_handler, &pairs(self), &pairs(other));
        labels.into_iter().zip(&self.packages).map(|(label, p)| (label, p.version.as_str())).collect()
    }
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
                inputs: Some(InputChoice::Given),
                input_paths: vec!["/x".into()],
                source_date_epoch: None,
                timestamp: 1_700_000_000,
                kernel_format: KernelFormat::Auto,
            },
            kernel: ManifestKernel {
                version: "6.1.0-56-amd64".into(),
                path: "/boot/vmlinuz-6.1.0-56-amd64".into(),
                sha256: "aa".into(),
                modules_dir: "/lib/modules/6.1.0-56-amd64".into(),
                modules_dep_sha256: "bb".into(),
                modules_tree_sha256: "b0".into(),
            },
            inputs: vec![ManifestInput {
                path: "/x/packages".into(),
                kind: "packages".into(),
                sha256: "cc".into(),
            }],
            hostfiles: vec!["/etc/ld.so.cache".into()],
            host_files: vec![ManifestHostfile {
                path: "/etc/ld.so.cache".into(),
                kind: "file".into(),
                mode: 0o644,
                uid: 0,
                gid: 0,
                content: "c0".into(),
            }],
            missing_packages: vec!["xfsprogs".into()],
            packages: vec![ManifestPackage {
                name: "bash".into(),
                version: "5.2".into(),
                arch: "amd64".into(),
            }],
            output: ManifestOutput::default(),
            outputs: vec![ManifestFile {
                name: "kernel".into(),
                size: 3,
                algorithm: crate::digest::SHA256.into(),
                hash: "dd".into(),
            }],
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
    fn fingerprint_covers_hostfile_content_modules_tree_and_timestamp() {
        let a = sample();
        let mut b = sample();
        b.host_files[0].content = "c1".into();
        assert_ne!(a.compute_fingerprint(), b.compute_fingerprint());
        let mut b = sample();
        b.kernel.modules_tree_sha256 = "b1".into();
        assert_ne!(a.compute_fingerprint(), b.compute_fingerprint());
        let mut b = sample();
        b.options.timestamp += 1;
        assert_ne!(a.compute_fingerprint(), b.compute_fingerprint());
    }

    /// A manifest written before format 2 (no input choice, timestamp,
    /// matched hostfiles or modules tree digest) still reads, and says how
    /// its inputs were chosen.
    #[test]
    fn format_1_manifest_reads_with_defaults() {
        let text = r#"format_version = 1
tool_version = "0.1.0"
fingerprint = "ff"
built_at = 1
package_handler = "dpkg"
hostfiles = []
missing_packages = []

[options]
size = 4294967296
host_cpu = "x86_64"
root = "/"
strict = false

[kernel]
version = "6.1.0-56-amd64"
path = "/boot/vmlinuz-6.1.0-56-amd64"
sha256 = "aa"
modules_dir = "/lib/modules/6.1.0-56-amd64"
modules_dep_sha256 = "bb"

[[inputs]]
path = "<embedded>/packages"
kind = "packages"
sha256 = "cc"

[[packages]]
name = "bash"
version = "5.2"
arch = "amd64"

[output]
root_uuid = ""
files = 0
root_allocated_bytes = 0
initrd_bytes = 0
initrd_modules = 0
"#;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST_NAME), text).unwrap();
        let mut m = Manifest::read(dir.path()).unwrap();
        assert_eq!(m.format_version, 1);
        assert_eq!(m.input_request(), (InputChoice::Minimal, vec![]));
        assert_eq!(m.inputs_label(), "minimal");
        m.inputs[0].path = "/usr/lib/x86_64-linux-gnu/guestfs/supermin.d/packages".into();
        assert_eq!(
            m.input_request(),
            (InputChoice::Given, vec![PathBuf::from("/usr/lib/x86_64-linux-gnu/guestfs/supermin.d")])
        );
        assert_eq!(m.inputs_label(), "/usr/lib/x86_64-linux-gnu/guestfs/supermin.d");
    }

    #[test]
    fn unreadable_manifest_says_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MANIFEST_NAME), "not = [toml").unwrap();
        let err = Manifest::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("rebuild"), "{err}");
    }
}
