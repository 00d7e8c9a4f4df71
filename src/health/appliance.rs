//! Facts and probes about the fixed appliance itself: are its files there,
//! is the root image an ext2 file system with the UUID the manifest
//! records, which kernel does it boot (manifest and bzImage header) and is
//! it the one the host would pick now, is it fresh (`crate::build::fresh`), how
//! old and how big is it.
//!
//! It reads; it never builds or repairs (that is `build`), and it does not
//! look inside the root image beyond the superblock (no debugfs at run
//! time: the manifest's kernel version names the modules it holds).
//! Where the appliance lives and how fast that is belongs to
//! `location.rs`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::libguestfs::LibguestfsEnv;
use super::libguestfs::Source;
use super::location;
use super::probe::{Finding, HealthError, ProbeInfo, ProbeResult, Severity};
use crate::build::fresh::{self, Freshness, Verdict};
use crate::config::{Config, HealthConfig};
use crate::image::ext2;
use crate::kernel::{self, KernelEnv};
use crate::manifest::{Manifest, MANIFEST_NAME};
use crate::output::APPLIANCE_FILES;
use crate::printer::human_bytes;

/// The files libguestfs itself needs to boot a fixed appliance.
pub(crate) const BOOT_FILES: [&str; 3] = ["kernel", "initrd", "root"];

/// One file of the appliance directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ApplianceFile {
    /// `kernel`, `initrd`, `root`, `README.fixed`, `manifest.toml`.
    pub(crate) name: String,
    /// Whether it exists as a regular file.
    pub(crate) present: bool,
    /// Apparent size.
    pub(crate) bytes: u64,
    /// Allocated bytes (the root image is sparse).
    pub(crate) allocated_bytes: u64,
}

/// The root image's superblock, as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct RootImage {
    /// ext2 magic present.
    pub(crate) valid: bool,
    /// File system UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) uuid: Option<String>,
    /// Size of the file system.
    pub(crate) size_bytes: u64,
    /// Free space inside it.
    pub(crate) free_bytes: u64,
    /// Why it is not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// `status`'s rendering of the verdict (its JSON since schema 1):
/// `state` (`fresh`, `stale`, `unknown`), `changes` one line each, and
/// `reason` when unknown.
fn serialize_freshness<S: serde::Serializer>(v: &Option<Verdict>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let Some(v) = v else { return s.serialize_none() };
    let mut st = s.serialize_struct("Freshness", 3)?;
    st.serialize_field("state", v.status())?;
    st.serialize_field("changes", &v.changes().iter().map(|c| c.to_string()).collect::<Vec<_>>())?;
    match v.reason() {
        Some(why) => st.serialize_field("reason", why)?,
        None => st.skip_field("reason")?,
    }
    st.end()
}

/// Everything known about the appliance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ApplianceFacts {
    /// The directory.
    pub(crate) dir: PathBuf,
    /// It exists and is a directory.
    pub(crate) exists: bool,
    /// Its files.
    pub(crate) files: Vec<ApplianceFile>,
    /// kernel, initrd and root are present and the root has ext2 magic.
    pub(crate) bootable: bool,
    /// All five files are present.
    pub(crate) complete: bool,
    /// The root image superblock (when the file exists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) root: Option<RootImage>,
    /// Kernel release the manifest records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) manifest_kernel: Option<String>,
    /// Root UUID the manifest records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) manifest_root_uuid: Option<String>,
    /// Why the manifest could not be read (when present but unreadable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) manifest_error: Option<String>,
    /// Kernel release from the bzImage header of `kernel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) image_kernel: Option<String>,
    /// The kernel the host would pick for a build now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) host_kernel: Option<String>,
    /// When it was built (manifest), seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) built_at: Option<i64>,
    /// Age in seconds (from `built_at`, else the newest file's mtime).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) age_seconds: Option<u64>,
    /// Allocated bytes of all files.
    pub(crate) allocated_bytes: u64,
    /// Bytes a new copy needs (from this appliance, or an estimate).
    pub(crate) need_bytes: u64,
    /// Whether `need_bytes` is the fixed estimate (nothing built yet).
    pub(crate) need_is_estimate: bool,
    /// Freshness: [`crate::build::fresh`]'s verdict (absent when not
    /// checked).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "serialize_freshness")]
    pub(crate) freshness: Option<Verdict>,
}

/// Gather the appliance facts for `dir`. With `freshness`, compare it with
/// the host through `crate::build::fresh` (fast when check's stamp holds).
pub(crate) fn gather(dir: &Path, config: &Config, freshness: bool) -> ApplianceFacts {
    let files: Vec<ApplianceFile> = APPLIANCE_FILES
        .iter()
        .map(|name| {
            let md = std::fs::metadata(dir.join(name)).ok().filter(|m| m.is_file());
            ApplianceFile {
                name: name.to_string(),
                present: md.is_some(),
                bytes: md.as_ref().map_or(0, |m| m.len()),
                allocated_bytes: md.as_ref().map_or(0, |m| m.blocks() * 512),
            }
        })
        .collect();
    let present = |n: &str| files.iter().any(|f| f.name == n && f.present);
    let root_len = files.iter().find(|f| f.name == "root").map_or(0, |f| f.bytes);
    let root = present("root").then(|| root_image(&dir.join("root"), root_len));
    let (manifest, manifest_error) = if present(MANIFEST_NAME) {
        match Manifest::read(dir) {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    let image_kernel = read_head(&dir.join("kernel")).and_then(|b| kernel::version_from_image(&b));
    let host_kernel = kernel::select_kernel(&KernelEnv::from_env(), Path::new("/"), std::env::consts::ARCH)
        .ok()
        .map(|k| k.version);
    let newest_mtime = files
        .iter()
        .filter(|f| f.present)
        .filter_map(|f| std::fs::metadata(dir.join(&f.name)).ok().map(|m| m.mtime()))
        .max();
    let built_at = manifest.as_ref().map(|m| m.built_at).filter(|t| *t > 0);
    let age_seconds = built_at.or(newest_mtime).map(|t| (super::probe::now_secs() - t).max(0) as u64);
    let size_of = |n: &str| files.iter().find(|f| f.name == n).map_or(0, |f| f.allocated_bytes);
    let (need_bytes, need_is_estimate) = match &manifest {
        Some(m) if m.output.root_allocated_bytes > 0 => {
            (m.output.root_allocated_bytes + m.output.initrd_bytes + size_of("kernel"), false)
        }
        _ if present("root") => (size_of("root") + size_of("initrd") + size_of("kernel"), false),
        _ => (location::ESTIMATED_APPLIANCE_BYTES, true),
    };
    let bootable = BOOT_FILES.iter().all(|n| present(n)) && root.as_ref().is_some_and(|r| r.valid);
    let freshness = (freshness && manifest.is_some()).then(|| fresh::report(dir, config));
    ApplianceFacts {
        dir: dir.to_path_buf(),
        exists: dir.is_dir(),
        complete: files.iter().all(|f| f.present),
        bootable,
        allocated_bytes: files.iter().map(|f| f.allocated_bytes).sum(),
        root,
        manifest_kernel: manifest.as_ref().map(|m| m.kernel.version.clone()),
        manifest_root_uuid: manifest.as_ref().map(|m| m.output.root_uuid.clone()).filter(|u| !u.is_empty()),
        manifest_error,
        image_kernel,
        host_kernel,
        built_at,
        age_seconds,
        need_bytes,
        need_is_estimate,
        freshness,
        files,
    }
}

/// The root image as its superblock describes it. A file shorter than the
/// file system its superblock claims is damaged (truncated: the kernel
/// fails reading past its end), whatever the superblock says.
fn root_image(path: &Path, file_len: u64) -> RootImage {
    let invalid = |error: String| RootImage {
        valid: false,
        uuid: None,
        size_bytes: 0,
        free_bytes: 0,
        error: Some(error),
    };
    match ext2::read_superblock(path) {
        Ok(sb) => {
            let size = sb.blocks * u64::from(sb.block_size);
            if file_len < size {
                return invalid(format!(
                    "damaged: the file holds {} of its {} file system (truncated)",
                    human_bytes(file_len),
                    human_bytes(size)
                ));
            }
            RootImage {
                valid: true,
                uuid: Some(ext2::format_uuid(&sb.uuid)),
                size_bytes: size,
                free_bytes: sb.free_blocks * u64::from(sb.block_size),
                error: None,
            }
        }
        Err(e) => invalid(e.to_string()),
    }
}

/// The first 68 KiB of a file: enough for the bzImage header and its
/// version string.
fn read_head(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    crate::bounded::open_regular(path).ok()?.take(0x1_1000).read_to_end(&mut buf).ok()?;
    Some(buf)
}

fn build_remedy(a: &ApplianceFacts) -> String {
    format!("rebuild it with `guestfs-appliance build {}`", a.dir.display())
}

/// What the appliance probes look at: the appliance, and the part of the
/// environment that says what its absence means.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApplianceContext<'a> {
    /// The appliance.
    pub(crate) appliance: &'a ApplianceFacts,
    /// What libguestfs uses here (its search path, the appliance it finds).
    pub(crate) libguestfs: &'a LibguestfsEnv,
    /// Why this appliance directory is the one examined.
    pub(crate) examined_dir_source: Source,
    /// Whether libguestfs itself is installed (when not, that is
    /// `virt.libguestfs`'s finding, not the search path's).
    pub(crate) libguestfs_installed: bool,
}

/// `appliance.search-path`: libguestfs finds an appliance to launch.
pub(crate) const SEARCH_PATH: ProbeInfo = ProbeInfo {
    name: "appliance.search-path",
    severity: Severity::Critical,
    summary:
        "libguestfs finds a supermin, fixed or old-style appliance on LIBGUESTFS_PATH (or its default path)",
    needs_measurement: false,
};

pub(crate) fn check_search_path(ctx: &ApplianceContext, _: &HealthConfig) -> ProbeResult {
    let lg = ctx.libguestfs;
    if lg.appliance.is_some() {
        return Ok(Ok(()));
    }
    let shown: Vec<String> = lg.search_path.iter().map(|p| p.display().to_string()).collect();
    let (subject, message, remedy) = match &lg.path_var {
        Some(var) => (
            "LIBGUESTFS_PATH".to_string(),
            format!(
                "LIBGUESTFS_PATH={var}: libguestfs finds no supermin, fixed or old-style appliance there, so every launch fails"
            ),
            format!(
                "build one there (`guestfs-appliance build {}`), or point LIBGUESTFS_PATH at a built appliance, or unset it",
                shown.first().map_or("DIR", String::as_str)
            ),
        ),
        // libguestfs missing altogether is virt.libguestfs's finding.
        None if !ctx.libguestfs_installed || shown.is_empty() => return Ok(Ok(())),
        None => (
            shown.join(":"),
            format!(
                "libguestfs's own appliance input is missing from {}: launches fail unless LIBGUESTFS_PATH points at an appliance",
                shown.join(":")
            ),
            "reinstall libguestfs, or build a fixed appliance and set LIBGUESTFS_PATH (`guestfs-appliance env`)".into(),
        ),
    };
    Ok(Err(Finding { probe: SEARCH_PATH.name, severity: Severity::Critical, subject, message, remedy }))
}

/// `appliance.present`: the directory holds every appliance file.
pub(crate) const PRESENT: ProbeInfo = ProbeInfo {
    name: "appliance.present",
    severity: Severity::Critical,
    summary: "the fixed appliance directory holds kernel, initrd, root, README.fixed and manifest.toml",
    needs_measurement: false,
};

pub(crate) fn check_present(ctx: &ApplianceContext, _: &HealthConfig) -> ProbeResult {
    let a = ctx.appliance;
    let missing: Vec<&str> = a.files.iter().filter(|f| !f.present).map(|f| f.name.as_str()).collect();
    if missing.is_empty() {
        return Ok(Ok(()));
    }
    let subject = a.dir.display().to_string();
    if !a.exists || missing.len() == a.files.len() {
        let consequence = if ctx.examined_dir_source == Source::LibguestfsPath {
            "LIBGUESTFS_PATH names it (see appliance.search-path)"
        } else {
            "libguestfs builds one with supermin on first launch"
        };
        return Ok(Err(Finding {
            probe: PRESENT.name,
            severity: Severity::Warning,
            subject,
            message: format!("no fixed appliance at {}: {consequence}", a.dir.display()),
            remedy: format!(
                "build one with `guestfs-appliance build {}` and set LIBGUESTFS_PATH (`guestfs-appliance env`)",
                a.dir.display()
            ),
        }));
    }
    // Without kernel/initrd/root libguestfs cannot boot it: critical if
    // LIBGUESTFS_PATH points there.
    let boot_missing = missing.iter().any(|m| BOOT_FILES.contains(m));
    Ok(Err(Finding {
        probe: PRESENT.name,
        severity: if boot_missing { Severity::Critical } else { Severity::Warning },
        subject,
        message: format!("the appliance is incomplete: missing {}", missing.join(", ")),
        remedy: build_remedy(a),
    }))
}

/// `appliance.root`: the root image is ext2 with the recorded UUID.
pub(crate) const ROOT: ProbeInfo = ProbeInfo {
    name: "appliance.root",
    severity: Severity::Critical,
    summary: "the root image has a valid ext2 superblock whose UUID matches the manifest",
    needs_measurement: false,
};

pub(crate) fn check_root(ctx: &ApplianceContext, _: &HealthConfig) -> ProbeResult {
    let a = ctx.appliance;
    let Some(root) = &a.root else {
        return Err(HealthError::Unavailable("no root image".into()));
    };
    let finding = |message: String| Finding {
        probe: ROOT.name,
        severity: Severity::Critical,
        subject: a.dir.join("root").display().to_string(),
        message,
        remedy: build_remedy(a),
    };
    if !root.valid {
        return Ok(Err(finding(root.error.clone().unwrap_or_else(|| "not an ext2 image".into()))));
    }
    match (&root.uuid, &a.manifest_root_uuid) {
        (Some(have), Some(want)) if have != want => Ok(Err(finding(format!(
            "root image UUID {have} differs from the manifest's {want}: the kernel command line will name the wrong disk"
        )))),
        _ => Ok(Ok(())),
    }
}

/// `appliance.kernel`: kernel image, manifest and host agree.
pub(crate) const KERNEL: ProbeInfo = ProbeInfo {
    name: "appliance.kernel",
    severity: Severity::Critical,
    summary:
        "the kernel's version matches the manifest (and the image's modules), and the host's choice (the file's own version is read from a bzImage header; an uncompressed kernel is covered by its recorded size and digest)",
    needs_measurement: false,
};

pub(crate) fn check_kernel(ctx: &ApplianceContext, _: &HealthConfig) -> ProbeResult {
    let a = ctx.appliance;
    let Some(recorded) = &a.manifest_kernel else {
        return Err(HealthError::Unavailable(
            a.manifest_error.clone().unwrap_or_else(|| "no manifest records the kernel".into()),
        ));
    };
    let subject = a.dir.join("kernel").display().to_string();
    if let Some(image) = &a.image_kernel {
        if image != recorded {
            return Ok(Err(Finding {
                probe: KERNEL.name,
                severity: Severity::Critical,
                subject,
                message: format!(
                    "the kernel file is {image} but the root image holds modules for {recorded}: modules will not load"
                ),
                remedy: build_remedy(a),
            }));
        }
    }
    match &a.host_kernel {
        Some(host) if host != recorded => Ok(Err(Finding {
            probe: KERNEL.name,
            severity: Severity::Warning,
            subject,
            message: format!("the appliance boots kernel {recorded}; the host would now use {host}"),
            remedy: build_remedy(a),
        })),
        _ => Ok(Ok(())),
    }
}

/// `appliance.fresh`: built from the host's current state.
pub(crate) const FRESH: ProbeInfo = ProbeInfo {
    name: "appliance.fresh",
    severity: Severity::Warning,
    summary: "the appliance matches the host's packages, inputs and kernel (as `check` says)",
    needs_measurement: false,
};

pub(crate) fn check_fresh(ctx: &ApplianceContext, _: &HealthConfig) -> ProbeResult {
    let a = ctx.appliance;
    let Some(f) = &a.freshness else {
        return Err(HealthError::Unavailable("freshness not checked (no manifest)".into()));
    };
    match &f.freshness {
        Freshness::Fresh => Ok(Ok(())),
        Freshness::Stale(changes) => {
            let n = changes.len();
            let shown: Vec<String> = changes.iter().take(3).map(|c| c.to_string()).collect();
            let more = if n > 3 { format!(" and {} more", n - 3) } else { String::new() };
            Ok(Err(Finding {
                probe: FRESH.name,
                severity: Severity::Warning,
                subject: a.dir.display().to_string(),
                message: format!("the appliance is stale ({n} changes: {}{more})", shown.join("; ")),
                remedy: format!("`guestfs-appliance build --if-needed {}`", a.dir.display()),
            }))
        }
        Freshness::Unknown(why) => Err(HealthError::Unavailable(why.clone())),
    }
}

/// `appliance.age`: not older than `health.max_appliance_age_days`.
pub(crate) const AGE: ProbeInfo = ProbeInfo {
    name: "appliance.age",
    severity: Severity::Warning,
    summary: "the appliance is younger than health.max_appliance_age_days",
    needs_measurement: false,
};

pub(crate) fn check_age(ctx: &ApplianceContext, cfg: &HealthConfig) -> ProbeResult {
    let a = ctx.appliance;
    let Some(age) = a.age_seconds else {
        return Err(HealthError::Unavailable("no appliance".into()));
    };
    let days = age / 86_400;
    if days <= cfg.max_appliance_age_days {
        return Ok(Ok(()));
    }
    Ok(Err(Finding {
        probe: AGE.name,
        severity: Severity::Warning,
        subject: a.dir.display().to_string(),
        message: format!(
            "the appliance is {days} days old ({}; threshold {} days): it misses security updates of the host",
            human_bytes(a.allocated_bytes),
            cfg.max_appliance_age_days
        ),
        remedy: build_remedy(a),
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::build::fresh::Change;

    pub(crate) fn healthy() -> ApplianceFacts {
        let files = APPLIANCE_FILES
            .iter()
            .map(|n| ApplianceFile { name: n.to_string(), present: true, bytes: 10, allocated_bytes: 10 })
            .collect();
        ApplianceFacts {
            dir: PathBuf::from("/dev/shm/appliance"),
            exists: true,
            files,
            bootable: true,
            complete: true,
            root: Some(RootImage {
                valid: true,
                uuid: Some("64badd87-c8e1-472b-bf1b-7bf94b91849c".into()),
                size_bytes: 4 << 30,
                free_bytes: 3 << 30,
                error: None,
            }),
            manifest_kernel: Some("6.1.0-56-amd64".into()),
            manifest_root_uuid: Some("64badd87-c8e1-472b-bf1b-7bf94b91849c".into()),
            manifest_error: None,
            image_kernel: Some("6.1.0-56-amd64".into()),
            host_kernel: Some("6.1.0-56-amd64".into()),
            built_at: Some(1),
            age_seconds: Some(3600),
            allocated_bytes: 700 << 20,
            need_bytes: 700 << 20,
            need_is_estimate: false,
            freshness: Some(Verdict { freshness: Freshness::Fresh, ..Verdict::unknown(String::new()) }),
        }
    }

    fn facts_with(f: impl FnOnce(&mut ApplianceFacts)) -> crate::health::Facts {
        let mut facts = crate::health::tests::healthy_facts();
        f(&mut facts.appliance);
        facts
    }

    #[test]
    fn missing_and_incomplete() {
        let cfg = HealthConfig::default();
        let facts = facts_with(|a| {
            a.exists = false;
            a.files.iter_mut().for_each(|f| f.present = false);
        });
        let f = check_present(&facts.appliance_context(), &cfg).unwrap().unwrap_err();
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.remedy.contains("guestfs-appliance build /dev/shm/appliance"), "{}", f.remedy);
        let facts = facts_with(|a| a.files[2].present = false); // root
        let f = check_present(&facts.appliance_context(), &cfg).unwrap().unwrap_err();
        assert_eq!(f.severity, Severity::Critical);
        assert!(f.message.contains("missing root"), "{}", f.message);
        let facts = facts_with(|a| a.files[3].present = false); // README.fixed
        assert_eq!(
            check_present(&facts.appliance_context(), &cfg).unwrap().unwrap_err().severity,
            Severity::Warning
        );
    }

    #[test]
    fn root_uuid_must_match_the_manifest() {
        let cfg = HealthConfig::default();
        assert!(check_root(&facts_with(|_| {}).appliance_context(), &cfg).unwrap().is_ok());
        let facts =
            facts_with(|a| a.manifest_root_uuid = Some("00000000-0000-4000-8000-000000000000".into()));
        assert!(check_root(&facts.appliance_context(), &cfg)
            .unwrap()
            .unwrap_err()
            .message
            .contains("differs"));
        let facts = facts_with(|a| a.root.as_mut().unwrap().valid = false);
        assert_eq!(
            check_root(&facts.appliance_context(), &cfg).unwrap().unwrap_err().severity,
            Severity::Critical
        );
        assert!(check_root(&facts_with(|a| a.root = None).appliance_context(), &cfg).is_err());
    }

    #[test]
    fn kernel_mismatches() {
        let cfg = HealthConfig::default();
        let facts = facts_with(|a| a.image_kernel = Some("6.1.0-99-amd64".into()));
        assert_eq!(
            check_kernel(&facts.appliance_context(), &cfg).unwrap().unwrap_err().severity,
            Severity::Critical
        );
        let facts = facts_with(|a| a.host_kernel = Some("6.1.0-99-amd64".into()));
        let f = check_kernel(&facts.appliance_context(), &cfg).unwrap().unwrap_err();
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.message.contains("6.1.0-99-amd64"));
        assert!(check_kernel(&facts_with(|a| a.manifest_kernel = None).appliance_context(), &cfg).is_err());
    }

    #[test]
    fn stale_lists_changes_and_age_threshold() {
        let cfg = HealthConfig::default();
        let facts = facts_with(|a| {
            let changes = (0..5)
                .map(|i| Change::PackageUpgraded {
                    package: format!("p{i}"),
                    old: "1".into(),
                    new: "2".into(),
                })
                .collect();
            a.freshness =
                Some(Verdict { freshness: Freshness::Stale(changes), ..Verdict::unknown(String::new()) })
        });
        let f = check_fresh(&facts.appliance_context(), &cfg).unwrap().unwrap_err();
        assert!(f.message.contains("5 changes") && f.message.contains("2 more"), "{}", f.message);
        let facts = facts_with(|a| a.age_seconds = Some(91 * 86_400));
        assert!(check_age(&facts.appliance_context(), &cfg).unwrap().is_err());
        let facts = facts_with(|a| a.age_seconds = Some(89 * 86_400));
        assert!(check_age(&facts.appliance_context(), &cfg).unwrap().is_ok());
    }

    #[test]
    fn gather_reads_a_fake_appliance() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A tiny image with ext2 magic and a UUID.
        let mut root = vec![0u8; 4096];
        root[1024 + 0x38] = 0x53;
        root[1024 + 0x39] = 0xEF;
        root[1024 + 0x68..1024 + 0x78].copy_from_slice(&[0x11; 16]);
        std::fs::write(d.join("root"), &root).unwrap();
        std::fs::write(d.join("kernel"), b"not a bzImage").unwrap();
        std::fs::write(d.join("initrd"), b"x").unwrap();
        let a = gather(d, &Config::default(), true);
        assert!(a.exists && a.bootable && !a.complete);
        assert_eq!(a.root.as_ref().unwrap().uuid.as_deref(), Some("11111111-1111-1111-1111-111111111111"));
        assert_eq!(a.image_kernel, None);
        assert!(a.freshness.is_none(), "no manifest: not checked");
        assert!(!a.need_is_estimate);
        let missing = gather(&d.join("nope"), &Config::default(), true);
        assert!(!missing.exists && !missing.bootable && missing.need_is_estimate);
        assert_eq!(missing.need_bytes, location::ESTIMATED_APPLIANCE_BYTES);
    }
}
