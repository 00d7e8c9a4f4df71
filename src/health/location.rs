//! Where the appliance and libguestfs's caches live, and how good those
//! places are: file system type (statfs magic, named), size, free space and
//! inodes, the block devices underneath (through partitions, device-mapper
//! and md, via /proc/self/mountinfo and /sys/dev/block/M:m) and a speed
//! class; with `--probe`, a bounded write + fsync test.
//!
//! The locations are the fixed appliance directory and every place
//! libguestfs may cache its appliance: `$LIBGUESTFS_CACHEDIR`, `$TMPDIR`,
//! `/var/tmp` (the one in use is the base `libguestfs.rs` works out), plus
//! `/dev/shm` as the usual fast alternative. /proc and /sys are taken from
//! [`HostRoots`] so tests can pass fake trees; reading them (mountinfo,
//! sysfs, statfs) is `crate::host`'s, judging what they say is this file's. Probes about the appliance's
//! content and about virtualization live in `appliance.rs` and `virt.rs`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::libguestfs::LibguestfsEnv;
use super::probe::{Finding, HealthError, ProbeInfo, ProbeResult, Severity};
use crate::config::HealthConfig;
use crate::host::mountinfo::{self, MountInfo};
use crate::host::statfs::{self, fs_type_name, FUSE_MAGIC, OVERLAY_MAGIC, RAMFS_MAGIC, TMPFS_MAGIC};
use crate::host::sysfs::{disks_of, Disk};
use crate::host::HostRoots;
use crate::printer::human_bytes;

/// How fast a location is likely to be, from its file system and disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SpeedClass {
    /// tmpfs/ramfs: RAM.
    Memory,
    /// A local disk that says it is not rotational (SSD, NVMe, most virtual
    /// disks that pass the flag through).
    LocalSsd,
    /// A local spinning disk (or a stack with one under it).
    LocalRotational,
    /// NFS, CIFS, 9p, virtiofs, Ceph, ...
    Network,
    /// A user-space (FUSE) file system.
    Fuse,
    /// overlayfs (container layers).
    Overlay,
    /// Could not tell.
    Unknown,
}

impl SpeedClass {
    /// Whether libguestfs launches from here are known to be slow.
    pub(crate) fn is_slow(self) -> bool {
        matches!(
            self,
            SpeedClass::LocalRotational | SpeedClass::Network | SpeedClass::Fuse | SpeedClass::Overlay
        )
    }

    /// Fast enough to hold an appliance or cache.
    pub(crate) fn is_fast(self) -> bool {
        matches!(self, SpeedClass::Memory | SpeedClass::LocalSsd)
    }

    /// The name used in reports and metrics labels.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SpeedClass::Memory => "memory",
            SpeedClass::LocalSsd => "local-ssd",
            SpeedClass::LocalRotational => "local-rotational",
            SpeedClass::Network => "network",
            SpeedClass::Fuse => "fuse",
            SpeedClass::Overlay => "overlay",
            SpeedClass::Unknown => "unknown",
        }
    }
}

/// Why a location is in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Role {
    /// The fixed appliance directory.
    Appliance,
    /// `$LIBGUESTFS_CACHEDIR`.
    Cachedir,
    /// `$TMPDIR`.
    Tmpdir,
    /// `/var/tmp`, libguestfs's default cache.
    VarTmp,
    /// `/dev/shm`, the usual memory-backed alternative.
    Shm,
}

/// The bytes an appliance needs when none is built to measure: the
/// libguestfs appliance on Debian 12 allocates ~670 MB of root image plus
/// ~16 MB of kernel and initrd (docs/machine-quirks.md, "Appliance size on
/// Debian 12"); 1 GiB
/// leaves room for bigger package sets without resolving them, which would
/// cost more than `status`'s time budget.
pub(crate) const ESTIMATED_APPLIANCE_BYTES: u64 = 1 << 30;

/// A write probe never leaves less than this free on the file system.
const PROBE_RESERVE: u64 = 64 << 20;

/// Bytes libguestfs keeps in its cache when it boots a fixed appliance in
/// place: only the qemu probe files (`qemu-*.{stat,help,devices,
/// qmp-schema,query-kvm}`, a few hundred KiB; docs/libguestfs-side.md,
/// "Cache contents").
pub(crate) const QEMU_PROBE_CACHE_BYTES: u64 = 4 << 20;

/// What to assess: the paths and what an appliance needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocationSpec {
    /// Paths with their roles.
    pub(crate) paths: Vec<(PathBuf, Role)>,
    /// The cache base libguestfs uses (the active cache).
    pub(crate) active_cache: PathBuf,
    /// Bytes one copy of the appliance takes.
    pub(crate) need_bytes: u64,
    /// Bytes the active cache needs: a copy of the appliance when supermin
    /// builds one there, [`QEMU_PROBE_CACHE_BYTES`] when libguestfs boots a
    /// fixed appliance in place.
    pub(crate) cache_need_bytes: u64,
}

impl LocationSpec {
    /// The appliance directory, `$LIBGUESTFS_CACHEDIR` and `$TMPDIR` (when
    /// set), `/var/tmp` and `/dev/shm`; the active cache is the base
    /// libguestfs takes in `lg`.
    pub(crate) fn new(appliance_dir: &Path, lg: &LibguestfsEnv, need_bytes: u64) -> Self {
        let mut paths = vec![(appliance_dir.to_path_buf(), Role::Appliance)];
        if let Some(c) = &lg.cachedir_var {
            paths.push((c.clone(), Role::Cachedir));
        }
        if let Some(t) = &lg.tmpdir_var {
            paths.push((t.clone(), Role::Tmpdir));
        }
        paths.push((PathBuf::from("/var/tmp"), Role::VarTmp));
        paths.push((PathBuf::from("/dev/shm"), Role::Shm));
        let cache_need_bytes = if lg.uses_fixed_appliance() { QEMU_PROBE_CACHE_BYTES } else { need_bytes };
        LocationSpec { paths, active_cache: lg.cachedir.clone(), need_bytes, cache_need_bytes }
    }
}

/// One assessed location.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Location {
    /// The path as configured.
    pub(crate) path: PathBuf,
    /// Why it is here (several when paths coincide).
    pub(crate) roles: Vec<Role>,
    /// Whether libguestfs uses it as its cache now.
    pub(crate) active_cache: bool,
    /// Whether the path exists (if not, its nearest existing ancestor was
    /// measured).
    pub(crate) exists: bool,
    /// The directory actually measured.
    pub(crate) measured_path: PathBuf,
    /// File system type, named (`ext4`, `tmpfs`, `nfs`, `fuse.sshfs`, ...).
    pub(crate) fs_type: String,
    /// The statfs magic, hex.
    pub(crate) fs_magic: String,
    /// Mount point, from mountinfo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mount_point: Option<PathBuf>,
    /// Mount source (device or server), from mountinfo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) source: Option<String>,
    /// `major:minor` of the file system's device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) device: Option<String>,
    /// The real disks under it (partitions, dm and md followed), with
    /// whether each is rotational.
    pub(crate) disks: Vec<Disk>,
    /// Speed class.
    pub(crate) class: SpeedClass,
    /// File system size.
    pub(crate) total_bytes: u64,
    /// Bytes available to unprivileged users.
    pub(crate) free_bytes: u64,
    /// Inodes in total (`None` when the file system does not count them,
    /// e.g. btrfs).
    pub(crate) total_inodes: Option<u64>,
    /// Free inodes (`None` as above).
    pub(crate) free_inodes: Option<u64>,
    /// Bytes one copy of the appliance needs.
    pub(crate) need_bytes: u64,
    /// `--probe` write test, if run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) write_test: Option<WriteTest>,
    /// Why the location could not be assessed, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl Location {
    /// Whether libguestfs reads from or writes to it now (appliance or
    /// active cache): only those get space and speed findings.
    pub(crate) fn in_use(&self) -> bool {
        self.active_cache || self.roles.contains(&Role::Appliance)
    }

    /// Whether it has room for one more appliance copy (plus margin).
    pub(crate) fn has_room(&self, margin: f64) -> bool {
        self.error.is_none() && self.free_bytes as f64 >= self.need_bytes as f64 * margin
    }
}

/// Outcome of a `--probe` write test.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub(crate) enum WriteTest {
    /// Measured.
    Measured {
        /// Bytes written.
        bytes: u64,
        /// Write + fsync throughput, MB/s (10^6 bytes).
        mb_per_s: f64,
        /// Median latency of a 4 KiB write + fdatasync, ms.
        fsync_ms: f64,
    },
    /// Not run (no room, path missing, ...).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Run and failed.
    Failed {
        /// The error.
        error: String,
    },
}

/// Network file systems, by the names mountinfo and [`fs_type_name`] use.
const NETWORK_FS: &[&str] = &[
    "nfs",
    "nfs4",
    "cifs",
    "smb2",
    "smb",
    "smb3",
    "9p",
    "ceph",
    "afs",
    "gpfs",
    "lustre",
    "virtiofs",
    "glusterfs",
];

/// The speed class of a file system named `fs_type` with statfs `magic`
/// on `disks` (empty when not block-backed or unresolved).
pub(crate) fn classify(fs_type: &str, magic: u64, disks: &[Disk]) -> SpeedClass {
    let base = fs_type.split('.').next().unwrap_or(fs_type);
    if matches!(magic, TMPFS_MAGIC | RAMFS_MAGIC) || matches!(base, "tmpfs" | "ramfs") {
        return SpeedClass::Memory;
    }
    if base == "overlay" || magic == OVERLAY_MAGIC {
        return SpeedClass::Overlay;
    }
    // virtiofs and glusterfs report the FUSE magic; their mountinfo name
    // says what they are.
    if NETWORK_FS.contains(&base) || NETWORK_FS.contains(&fs_type_name(magic)) {
        return SpeedClass::Network;
    }
    if base == "fuse" || base == "fuseblk" || magic == FUSE_MAGIC {
        return SpeedClass::Fuse;
    }
    if disks.is_empty() {
        return SpeedClass::Unknown;
    }
    // A virtual disk's rotational flag is the hypervisor's choice, not the
    // storage's (virtio-blk says 1 on an NVMe-backed host): it counts as
    // unknown. A stack is as slow as its slowest disk (md RAID waits for
    // all).
    let flag = |d: &Disk| if d.is_virtual { None } else { d.rotational };
    if disks.iter().any(|d| flag(d) == Some(true)) {
        SpeedClass::LocalRotational
    } else if disks.iter().all(|d| flag(d) == Some(false)) {
        SpeedClass::LocalSsd
    } else {
        SpeedClass::Unknown
    }
}

/// The nearest existing ancestor of `path` (itself if it exists).
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut cur = path.to_path_buf();
    loop {
        if cur.exists() {
            return cur;
        }
        match cur.parent() {
            Some(p) if !p.as_os_str().is_empty() => cur = p.to_path_buf(),
            _ => return PathBuf::from("/"),
        }
    }
}

/// Assess every location of `spec`. Never fails: a location that cannot be
/// inspected carries its error.
pub(crate) fn assess(spec: &LocationSpec, roots: &HostRoots) -> Vec<Location> {
    let mountinfo_path = roots.proc.join("self/mountinfo");
    let mounts = crate::bounded::read_to_string(&mountinfo_path, crate::bounded::PROC_MAX)
        .map(|t| mountinfo::parse(&t))
        .unwrap_or_default();
    let mut by_path: BTreeMap<PathBuf, Vec<Role>> = BTreeMap::new();
    let mut order = Vec::new();
    for (p, role) in &spec.paths {
        if !by_path.contains_key(p) {
            order.push(p.clone());
        }
        by_path.entry(p.clone()).or_default().push(*role);
    }
    order
        .into_iter()
        .map(|path| {
            let roles = by_path.remove(&path).unwrap_or_default();
            let active_cache = path == spec.active_cache;
            let need = if active_cache && !roles.contains(&Role::Appliance) {
                spec.cache_need_bytes
            } else {
                spec.need_bytes
            };
            assess_one(&path, roles, active_cache, need, &mounts, roots)
        })
        .collect()
}

fn assess_one(
    path: &Path,
    roles: Vec<Role>,
    active_cache: bool,
    need_bytes: u64,
    mounts: &[MountInfo],
    roots: &HostRoots,
) -> Location {
    let measured = existing_ancestor(path);
    let mut loc = Location {
        path: path.to_path_buf(),
        roles,
        active_cache,
        exists: path.exists(),
        measured_path: measured.clone(),
        fs_type: "unknown".into(),
        fs_magic: String::new(),
        mount_point: None,
        source: None,
        device: None,
        disks: Vec::new(),
        class: SpeedClass::Unknown,
        total_bytes: 0,
        free_bytes: 0,
        total_inodes: None,
        free_inodes: None,
        need_bytes,
        write_test: None,
        error: None,
    };
    let st = match statfs::stat(&measured) {
        Ok(st) => st,
        Err(e) => {
            loc.error = Some(format!("statfs {}: {}", measured.display(), e.desc()));
            return loc;
        }
    };
    let magic = st.magic;
    loc.fs_magic = format!("0x{magic:x}");
    loc.fs_type = fs_type_name(magic).to_string();
    loc.total_bytes = st.total_bytes;
    loc.free_bytes = st.free_bytes;
    if let Some((total, free)) = st.inodes {
        loc.total_inodes = Some(total);
        loc.free_inodes = Some(free);
    }
    let canonical = std::fs::canonicalize(&measured).unwrap_or(measured.clone());
    let dev = std::fs::metadata(&canonical).ok().map(|m| {
        let d = m.dev();
        (nix::sys::stat::major(d) as u32, nix::sys::stat::minor(d) as u32)
    });
    let mount = mountinfo::mount_for(mounts, &canonical, dev);
    if let Some(m) = mount {
        loc.mount_point = Some(m.mount_point.clone());
        loc.source = Some(m.source.clone());
        // mountinfo names the exact type (ext4 rather than ext2/3/4,
        // fuse.sshfs, virtiofs).
        loc.fs_type = m.fs_type.clone();
    }
    // Block-backed file systems: the device of the file. btrfs and others
    // use an anonymous device (major 0); their mount source names the
    // real one.
    let block_dev = match dev {
        Some((0, _)) | None => mount
            .filter(|m| m.source.starts_with("/dev/"))
            .and_then(|m| std::fs::metadata(&m.source).ok())
            .filter(|md| md.rdev() != 0)
            .map(|md| (nix::sys::stat::major(md.rdev()) as u32, nix::sys::stat::minor(md.rdev()) as u32)),
        Some(d) => Some(d),
    };
    if let Some((maj, min)) = dev {
        loc.device = Some(format!("{maj}:{min}"));
    }
    if let Some((maj, min)) = block_dev {
        if let Ok(disks) = disks_of(&roots.sys, maj, min) {
            loc.disks = disks;
        }
    }
    loc.class = classify(&loc.fs_type, magic, &loc.disks);
    loc
}

/// Run the `--probe` write test in every location (once per file system:
/// locations on the same device share the result). Tests not started by
/// `deadline` (`--timeout`) are skipped.
pub(crate) fn measure(locations: &mut [Location], probe_bytes: u64, deadline: Option<Instant>) {
    let mut done: BTreeMap<String, WriteTest> = BTreeMap::new();
    for loc in locations.iter_mut() {
        let key = loc.device.clone().unwrap_or_else(|| loc.measured_path.display().to_string());
        if let Some(t) = done.get(&key) {
            loc.write_test = Some(t.clone());
            continue;
        }
        let test = if loc.error.is_some() {
            WriteTest::Skipped { reason: "location could not be assessed".into() }
        } else if deadline.is_some_and(|d| Instant::now() >= d) {
            WriteTest::Skipped { reason: "no time left within --timeout".into() }
        } else if loc.free_bytes < probe_bytes.saturating_mul(2) + PROBE_RESERVE {
            WriteTest::Skipped {
                reason: format!(
                    "only {} free; the test needs {} and leaves {} untouched",
                    human_bytes(loc.free_bytes),
                    human_bytes(probe_bytes),
                    human_bytes(probe_bytes + PROBE_RESERVE)
                ),
            }
        } else {
            // Beside a missing appliance directory, i.e. where the build's
            // staging directory goes; never inside an appliance directory,
            // which must hold only appliance files.
            let dir = if loc.roles.contains(&Role::Appliance) {
                existing_ancestor(loc.path.parent().unwrap_or(&loc.path))
            } else {
                loc.measured_path.clone()
            };
            match write_test(&dir, probe_bytes) {
                Ok(t) => t,
                Err(e) => WriteTest::Failed { error: e.to_string() },
            }
        };
        done.insert(key, test.clone());
        loc.write_test = Some(test);
    }
}

/// The test file; removed when dropped, so an error or a panic half-way
/// leaves nothing behind.
struct ProbeFile {
    path: PathBuf,
}

impl Drop for ProbeFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!(
                    "guestfs-appliance: warning: could not remove probe file {}: {e}",
                    self.path.display()
                );
            }
        }
    }
}

/// Write `bytes` (at most 64 MiB) of incompressible data to a new hidden
/// file in `dir`, fsync it, then time eight 4 KiB write + fdatasync rounds;
/// the file is removed in every case.
///
/// Errors: the file cannot be created or written (read-only, permission).
pub(crate) fn write_test(dir: &Path, bytes: u64) -> Result<WriteTest, HealthError> {
    let bytes = bytes.min(64 << 20);
    let path = dir.join(format!(".guestfs-appliance-probe.{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(HealthError::io("creating probe file", &path))?;
    let guard = ProbeFile { path };
    let path = &guard.path;
    let mut chunk = vec![0u8; 1 << 20];
    // xorshift: cheap bytes that no file system can compress or dedupe.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id());
    for b in chunk.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
    }
    let start = Instant::now();
    let mut w = &file;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..n]).map_err(HealthError::io("writing probe file", path))?;
        left -= n as u64;
    }
    file.sync_all().map_err(HealthError::io("syncing probe file", path))?;
    let secs = start.elapsed().as_secs_f64().max(1e-6);
    let mut lat = Vec::new();
    for i in 0..8u64 {
        let t = Instant::now();
        file.write_all_at(&chunk[..4096], bytes + i * 4096)
            .map_err(HealthError::io("writing probe file", path))?;
        file.sync_data().map_err(HealthError::io("syncing probe file", path))?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    drop(file);
    drop(guard);
    Ok(WriteTest::Measured { bytes, mb_per_s: bytes as f64 / 1e6 / secs, fsync_ms: lat[lat.len() / 2] })
}

fn role_phrase(loc: &Location) -> &'static str {
    if loc.roles.contains(&Role::Appliance) {
        "the fixed appliance directory"
    } else {
        "libguestfs's cache"
    }
}

fn remedy_for(loc: &Location) -> String {
    if loc.roles.contains(&Role::Appliance) {
        "build the appliance on a fast local disk or in memory, e.g. `guestfs-appliance build /dev/shm/appliance`, \
         and point LIBGUESTFS_PATH at it (`guestfs-appliance env` prints the settings)"
            .into()
    } else {
        "set LIBGUESTFS_CACHEDIR to a directory on a fast local disk or /dev/shm, or use a fixed appliance \
         (`guestfs-appliance build`, then `eval \"$(guestfs-appliance env)\"`)"
            .into()
    }
}

fn unassessable(loc: &Location) -> Option<HealthError> {
    loc.error.as_ref().map(|e| HealthError::Unavailable(e.clone()))
}

/// Whether `loc` is only libguestfs's cache while a fixed appliance is
/// booted in place: it then holds qemu probe files, and its speed does not
/// matter.
fn cache_only_for_probes(loc: &Location, ctx: &LocationContext) -> bool {
    !loc.roles.contains(&Role::Appliance) && ctx.libguestfs.uses_fixed_appliance()
}

/// What the location probes look at besides each location.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocationContext<'a> {
    /// What libguestfs uses here: its cache settings, and whether it boots
    /// a fixed appliance in place (then its cache holds only qemu probe
    /// files, and its speed does not matter).
    pub(crate) libguestfs: &'a LibguestfsEnv,
    /// Whether `--probe` measurements were taken.
    pub(crate) probed: bool,
}

/// `location.cachedir`: libguestfs accepts `LIBGUESTFS_CACHEDIR`/`TMPDIR`.
pub(crate) const CACHEDIR: ProbeInfo = ProbeInfo {
    name: "location.cachedir",
    severity: Severity::Warning,
    summary: "LIBGUESTFS_CACHEDIR and TMPDIR, when set, are existing directories (else libguestfs complains and uses /var/tmp)",
    needs_measurement: false,
};

pub(crate) fn check_cachedir(ctx: &LocationContext, _: &HealthConfig) -> ProbeResult {
    let lg = ctx.libguestfs;
    let Some(first) = lg.cachedir_errors.first() else {
        return Ok(Ok(()));
    };
    let var = first.split('=').next().unwrap_or("LIBGUESTFS_CACHEDIR");
    Ok(Err(Finding {
        probe: CACHEDIR.name,
        severity: Severity::Warning,
        subject: var.to_string(),
        message: lg.cachedir_errors.join("; "),
        remedy: format!(
            "create that directory, or unset {var} (`guestfs-appliance env` prints the settings to use)"
        ),
    }))
}

/// `location.space`: room for one more appliance copy, with the margin.
pub(crate) const SPACE: ProbeInfo = ProbeInfo {
    name: "location.space",
    severity: Severity::Critical,
    summary:
        "the appliance directory and the active cache have room for an appliance (with health.space_margin)",
    needs_measurement: false,
};

pub(crate) fn check_space(loc: &Location, _: &LocationContext, cfg: &HealthConfig) -> ProbeResult {
    if let Some(e) = unassessable(loc) {
        return Err(e);
    }
    if !loc.in_use() {
        return Ok(Ok(()));
    }
    let want = (loc.need_bytes as f64 * cfg.space_margin) as u64;
    if loc.free_bytes >= want {
        return Ok(Ok(()));
    }
    let severity = if loc.free_bytes < loc.need_bytes { Severity::Critical } else { Severity::Warning };
    Ok(Err(Finding {
        probe: SPACE.name,
        severity,
        subject: loc.path.display().to_string(),
        message: format!(
            "{} ({} on {}) has {} free; an appliance needs {} ({} with the {}x margin)",
            role_phrase(loc),
            loc.fs_type,
            loc.mount_point.as_deref().unwrap_or(&loc.measured_path).display(),
            human_bytes(loc.free_bytes),
            human_bytes(loc.need_bytes),
            human_bytes(want),
            cfg.space_margin
        ),
        remedy: format!("free space there, or {}", remedy_for(loc)),
    }))
}

/// `location.inodes`: enough free inodes for an appliance's files.
pub(crate) const INODES: ProbeInfo = ProbeInfo {
    name: "location.inodes",
    severity: Severity::Warning,
    summary: "the appliance directory and the active cache have health.min_free_inodes free inodes",
    needs_measurement: false,
};

pub(crate) fn check_inodes(loc: &Location, _: &LocationContext, cfg: &HealthConfig) -> ProbeResult {
    if let Some(e) = unassessable(loc) {
        return Err(e);
    }
    match loc.free_inodes {
        Some(free) if loc.in_use() && free < cfg.min_free_inodes => Ok(Err(Finding {
            probe: INODES.name,
            severity: Severity::Warning,
            subject: loc.path.display().to_string(),
            message: format!(
                "{} has only {free} free inodes (threshold {}); a libguestfs cache unpacks thousands of files",
                role_phrase(loc),
                cfg.min_free_inodes
            ),
            remedy: format!("remove unused files there, or {}", remedy_for(loc)),
        })),
        _ => Ok(Ok(())),
    }
}

/// `location.speed`: not on a slow class of storage.
pub(crate) const SPEED: ProbeInfo = ProbeInfo {
    name: "location.speed",
    severity: Severity::Warning,
    summary:
        "the appliance directory and the active cache are not on rotational, network, FUSE or overlay storage",
    needs_measurement: false,
};

pub(crate) fn check_speed(loc: &Location, ctx: &LocationContext, _: &HealthConfig) -> ProbeResult {
    if let Some(e) = unassessable(loc) {
        return Err(e);
    }
    if !loc.in_use() || cache_only_for_probes(loc, ctx) {
        return Ok(Ok(()));
    }
    let virtual_disks: Vec<String> = loc
        .disks
        .iter()
        .filter(|d| d.is_virtual)
        .map(|d| format!("{}: {}", d.name, d.virtual_evidence.as_deref().unwrap_or("virtual")))
        .collect();
    // A virtual disk's speed cannot be read from sysfs: without --probe say
    // so (info, not a warning: most cloud VMs would warn forever); with
    // --probe the write test's numbers decide (location.write-speed).
    if loc.class == SpeedClass::Unknown && !virtual_disks.is_empty() && !ctx.probed {
        return Ok(Err(Finding {
            probe: SPEED.name,
            severity: Severity::Info,
            subject: loc.path.display().to_string(),
            message: format!(
                "speed unknown: {} is on a virtual disk ({}), whose rotational flag says nothing about the storage behind it",
                role_phrase(loc),
                virtual_disks.join("; ")
            ),
            remedy: "measure it with `guestfs-appliance status --probe` (a bounded write and fsync test)".into(),
        }));
    }
    if !loc.class.is_slow() {
        return Ok(Ok(()));
    }
    let on = match loc.class {
        SpeedClass::LocalRotational => {
            let names: Vec<_> =
                loc.disks.iter().filter(|d| d.rotational == Some(true)).map(|d| d.name.as_str()).collect();
            format!("a rotational disk ({})", names.join(", "))
        }
        SpeedClass::Network => format!("a network file system ({})", loc.fs_type),
        SpeedClass::Fuse => format!("a FUSE file system ({})", loc.fs_type),
        _ => "overlayfs".to_string(),
    };
    Ok(Err(Finding {
        probe: SPEED.name,
        severity: Severity::Warning,
        subject: loc.path.display().to_string(),
        message: format!("{} is on {on}: every launch reads hundreds of MB from it", role_phrase(loc)),
        remedy: remedy_for(loc),
    }))
}

/// `location.write-speed`: `--probe` throughput and fsync latency.
pub(crate) const WRITE_SPEED: ProbeInfo = ProbeInfo {
    name: "location.write-speed",
    severity: Severity::Warning,
    summary: "--probe: write speed >= health.min_write_mb_per_s and fsync latency <= health.max_fsync_ms",
    needs_measurement: true,
};

pub(crate) fn check_write_speed(loc: &Location, ctx: &LocationContext, cfg: &HealthConfig) -> ProbeResult {
    match &loc.write_test {
        None => Err(HealthError::Unavailable("no write test was run".into())),
        Some(WriteTest::Skipped { reason }) => {
            Err(HealthError::Unavailable(format!("write test skipped: {reason}")))
        }
        Some(WriteTest::Failed { error }) => {
            Err(HealthError::Unavailable(format!("write test failed: {error}")))
        }
        Some(WriteTest::Measured { mb_per_s, fsync_ms, .. }) => {
            let fast = *mb_per_s >= cfg.min_write_mb_per_s && *fsync_ms <= cfg.max_fsync_ms;
            if !loc.in_use() || cache_only_for_probes(loc, ctx) || fast {
                return Ok(Ok(()));
            }
            Ok(Err(Finding {
                probe: WRITE_SPEED.name,
                severity: Severity::Warning,
                subject: loc.path.display().to_string(),
                message: format!(
                    "{} writes at {mb_per_s:.0} MB/s with {fsync_ms:.1} ms per fsync (thresholds: {} MB/s, {} ms)",
                    role_phrase(loc),
                    cfg.min_write_mb_per_s,
                    cfg.max_fsync_ms
                ),
                remedy: remedy_for(loc),
            }))
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn location(path: &str, class: SpeedClass, free: u64) -> Location {
        Location {
            path: PathBuf::from(path),
            roles: vec![Role::Appliance],
            active_cache: false,
            exists: true,
            measured_path: PathBuf::from(path),
            fs_type: "tmpfs".into(),
            fs_magic: "0x1021994".into(),
            mount_point: Some(PathBuf::from("/dev/shm")),
            source: Some("tmpfs".into()),
            device: Some("0:23".into()),
            disks: vec![],
            class,
            total_bytes: free * 2,
            free_bytes: free,
            total_inodes: Some(1_000_000),
            free_inodes: Some(900_000),
            need_bytes: ESTIMATED_APPLIANCE_BYTES,
            write_test: None,
            error: None,
        }
    }

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/health")
    }

    #[test]
    fn classes_from_fs_and_disks() {
        let rot = |r| vec![Disk::physical("sda", r)];
        assert_eq!(classify("tmpfs", 0x0102_1994, &[]), SpeedClass::Memory);
        assert_eq!(classify("overlay", 0x794c_7630, &[]), SpeedClass::Overlay);
        assert_eq!(classify("nfs4", 0x6969, &[]), SpeedClass::Network);
        assert_eq!(classify("virtiofs", 0x6573_5546, &[]), SpeedClass::Network);
        assert_eq!(classify("fuse.sshfs", 0x6573_5546, &[]), SpeedClass::Fuse);
        assert_eq!(classify("ext4", 0xEF53, &rot(Some(true))), SpeedClass::LocalRotational);
        assert_eq!(classify("ext4", 0xEF53, &rot(Some(false))), SpeedClass::LocalSsd);
        assert_eq!(classify("ext4", 0xEF53, &rot(None)), SpeedClass::Unknown);
        assert_eq!(classify("zfs", 0x2fc1_2fc1, &[]), SpeedClass::Unknown);
        let mixed = vec![Disk::physical("nvme0n1", Some(false)), Disk::physical("sdb", Some(true))];
        assert_eq!(classify("ext4", 0xEF53, &mixed), SpeedClass::LocalRotational);
    }

    /// Issue 7: a VM's disks say rotational=1 whatever backs them; their
    /// speed class is unknown, never local-rotational.
    #[test]
    fn virtual_disks_are_found_and_their_flag_ignored() {
        let sys = fixtures().join("sys");
        let disk = |maj, min| {
            let d = disks_of(&sys, maj, min).unwrap();
            assert_eq!(d.len(), 1, "{d:?}");
            d.into_iter().next().unwrap()
        };
        // virtio-blk (/dev/vda), found by its bus.
        let vda = disk(254, 0);
        assert_eq!((vda.name.as_str(), vda.rotational, vda.is_virtual), ("vda", Some(true), true));
        assert!(vda.virtual_evidence.as_deref().unwrap().contains("virtio bus (virtio1)"), "{vda:?}");
        // A SATA disk QEMU emulates, found by its model through a partition.
        let sdd = disk(8, 49);
        assert_eq!((sdd.name.as_str(), sdd.is_virtual), ("sdd", true));
        assert!(sdd.virtual_evidence.as_deref().unwrap().contains("QEMU HARDDISK"), "{sdd:?}");
        // Xen blkfront.
        assert!(disk(202, 0).is_virtual);
        for d in [vda, sdd, disk(202, 0)] {
            assert_eq!(classify("ext4", 0xEF53, std::slice::from_ref(&d)), SpeedClass::Unknown, "{d:?}");
        }
        // A real spinning disk beside a virtual one still makes it slow.
        let mixed = [disk(254, 0), Disk::physical("sda", Some(true))];
        assert_eq!(classify("ext4", 0xEF53, &mixed), SpeedClass::LocalRotational);
    }

    #[test]
    fn virtual_disk_speed_is_info_without_probe_and_measured_with_it() {
        let sys = fixtures().join("sys");
        let mut facts = crate::health::tests::healthy_facts();
        // No fixed appliance in use: libguestfs builds one in this cache.
        let fixed_in_use =
            std::mem::replace(&mut facts.environment.libguestfs, LibguestfsEnv::new(None, None, None, None));
        let cfg = HealthConfig::default();
        let mut loc = location("/var/tmp", SpeedClass::Unknown, 100 << 30);
        loc.roles = vec![Role::VarTmp];
        loc.active_cache = true;
        loc.disks = disks_of(&sys, 254, 0).unwrap();
        loc.class = classify("ext4", 0xEF53, &loc.disks);
        let f = check_speed(&loc, &facts.location_context(), &cfg).unwrap().unwrap_err();
        assert_eq!(f.severity, Severity::Info, "{f:?}");
        assert!(f.message.contains("virtual disk (vda: virtio bus") && f.remedy.contains("--probe"), "{f:?}");
        // With --probe: no class verdict; the write test decides.
        facts.probed = true;
        assert!(check_speed(&loc, &facts.location_context(), &cfg).unwrap().is_ok());
        loc.write_test = Some(WriteTest::Measured { bytes: 1, mb_per_s: 20.0, fsync_ms: 1.0 });
        assert_eq!(
            check_write_speed(&loc, &facts.location_context(), &cfg).unwrap().unwrap_err().severity,
            Severity::Warning
        );
        loc.write_test = Some(WriteTest::Measured { bytes: 1, mb_per_s: 900.0, fsync_ms: 0.5 });
        assert!(check_write_speed(&loc, &facts.location_context(), &cfg).unwrap().is_ok());
        // A cache that holds only qemu probe files (a fixed appliance is
        // booted in place): its speed does not matter.
        facts.probed = false;
        facts.environment.libguestfs = fixed_in_use;
        assert!(check_speed(&loc, &facts.location_context(), &cfg).unwrap().is_ok());
        loc.write_test = Some(WriteTest::Measured { bytes: 1, mb_per_s: 20.0, fsync_ms: 1.0 });
        assert!(check_write_speed(&loc, &facts.location_context(), &cfg).unwrap().is_ok());
        // A location libguestfs does not use: nothing to say.
        facts.environment.libguestfs = LibguestfsEnv::new(None, None, None, None);
        loc.active_cache = false;
        assert!(check_speed(&loc, &facts.location_context(), &cfg).unwrap().is_ok());
    }

    #[test]
    fn real_root_is_assessed() {
        let lg = LibguestfsEnv::new(None, None, None, None);
        let spec = LocationSpec::new(Path::new("/nonexistent/appliance"), &lg, 1 << 20);
        let locs = assess(&spec, &HostRoots::default());
        assert_eq!(locs.len(), 3);
        let app = &locs[0];
        assert!(!app.exists);
        assert_eq!(app.measured_path, PathBuf::from("/"));
        assert!(app.total_bytes > 0, "{app:?}");
        assert!(locs[1].active_cache && locs[1].roles == [Role::VarTmp]);
        assert_eq!(locs[2].class, SpeedClass::Memory, "{:?}", locs[2]);
    }

    #[test]
    fn cache_search_order_and_dedup() {
        let lg = LibguestfsEnv::new(None, Some("/var/tmp".into()), Some("/tmp".into()), None);
        let spec = LocationSpec::new(Path::new("/dev/shm"), &lg, 1);
        let locs = assess(&spec, &HostRoots::default());
        let paths: Vec<_> = locs.iter().map(|l| l.path.display().to_string()).collect();
        assert_eq!(paths, ["/dev/shm", "/var/tmp", "/tmp"]);
        assert_eq!(locs[0].roles, [Role::Appliance, Role::Shm]);
        assert_eq!(locs[1].roles, [Role::Cachedir, Role::VarTmp]);
        assert!(locs[1].active_cache && !locs[2].active_cache);
    }

    #[test]
    fn space_thresholds_and_remedies() {
        let facts = crate::health::tests::healthy_facts();
        let cfg = HealthConfig::default();
        let need = ESTIMATED_APPLIANCE_BYTES;
        let mut loc = location("/dev/shm/appliance", SpeedClass::Memory, need * 2);
        assert!(check_space(&loc, &facts.location_context(), &cfg).unwrap().is_ok());
        loc.free_bytes = need + 1;
        let f = check_space(&loc, &facts.location_context(), &cfg).unwrap().unwrap_err();
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.remedy.contains("LIBGUESTFS_PATH"), "{}", f.remedy);
        loc.free_bytes = need - 1;
        assert_eq!(
            check_space(&loc, &facts.location_context(), &cfg).unwrap().unwrap_err().severity,
            Severity::Critical
        );
        // A cache libguestfs does not use now: no finding.
        loc.roles = vec![Role::Shm];
        assert!(check_space(&loc, &facts.location_context(), &cfg).unwrap().is_ok());
        loc.roles = vec![Role::VarTmp];
        loc.active_cache = true;
        let f = check_space(&loc, &facts.location_context(), &cfg).unwrap().unwrap_err();
        assert!(f.remedy.contains("LIBGUESTFS_CACHEDIR"), "{}", f.remedy);
        loc.error = Some("statfs: denied".into());
        assert!(check_space(&loc, &facts.location_context(), &cfg).is_err());
    }

    #[test]
    fn inode_and_speed_findings() {
        let facts = crate::health::tests::healthy_facts();
        let cfg = HealthConfig::default();
        let mut loc = location("/var/tmp", SpeedClass::LocalRotational, 100 << 30);
        loc.disks = vec![Disk::physical("sda", Some(true))];
        let f = check_speed(&loc, &facts.location_context(), &cfg).unwrap().unwrap_err();
        assert!(f.message.contains("rotational disk (sda)"), "{}", f.message);
        loc.class = SpeedClass::LocalSsd;
        assert!(check_speed(&loc, &facts.location_context(), &cfg).unwrap().is_ok());
        loc.free_inodes = Some(10);
        assert!(check_inodes(&loc, &facts.location_context(), &cfg).unwrap().is_err());
        loc.free_inodes = None; // btrfs: not counted, no finding
        assert!(check_inodes(&loc, &facts.location_context(), &cfg).unwrap().is_ok());
    }

    #[test]
    fn write_speed_thresholds() {
        let facts = crate::health::tests::healthy_facts();
        let cfg = HealthConfig::default();
        let mut loc = location("/dev/shm/appliance", SpeedClass::Memory, 10 << 30);
        assert!(check_write_speed(&loc, &facts.location_context(), &cfg).is_err());
        loc.write_test = Some(WriteTest::Measured { bytes: 1, mb_per_s: 500.0, fsync_ms: 1.0 });
        assert!(check_write_speed(&loc, &facts.location_context(), &cfg).unwrap().is_ok());
        loc.write_test = Some(WriteTest::Measured { bytes: 1, mb_per_s: 20.0, fsync_ms: 1.0 });
        assert!(check_write_speed(&loc, &facts.location_context(), &cfg).unwrap().is_err());
        loc.write_test = Some(WriteTest::Measured { bytes: 1, mb_per_s: 500.0, fsync_ms: 80.0 });
        assert!(check_write_speed(&loc, &facts.location_context(), &cfg).unwrap().is_err());
    }

    #[test]
    fn write_test_measures_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = write_test(dir.path(), 2 << 20).unwrap();
        match t {
            WriteTest::Measured { bytes, mb_per_s, fsync_ms } => {
                assert_eq!(bytes, 2 << 20);
                assert!(mb_per_s > 0.0 && fsync_ms >= 0.0);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Unwritable directory: an error, and still nothing left.
        assert!(write_test(&dir.path().join("missing"), 1 << 20).is_err());
    }

    #[test]
    fn measure_skips_without_room() {
        let mut loc = location("/dev/shm/x", SpeedClass::Memory, 10 << 20);
        loc.roles = vec![Role::Shm];
        let mut locs = vec![loc];
        measure(&mut locs, 32 << 20, None);
        assert!(matches!(locs[0].write_test, Some(WriteTest::Skipped { .. })), "{:?}", locs[0].write_test);
    }
}
