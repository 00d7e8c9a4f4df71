//! The appliance initrd: which kernel modules go in, in which order, and the
//! cpio archive that holds them with the init (docs/supermin-compat.md,
//! "Initrd format" and "Module selection"; docs/traps.md, "Initrd layout").
//!
//! Selection works as supermin's (`src/format_ext2_initrd.ml`): the modules
//! whose basename matches [`MODULE_WHITELIST`] (minus [`MODULE_BLACKLIST`]),
//! plus everything they depend on according to `modules.dep`, ordered
//! dependencies-first so the init can load them one by one with
//! `init_module`. The list itself is shorter than supermin's: the drivers
//! of the devices libguestfs can attach and what mounting the root needs
//! (issue 12; the list's docs say why nothing can be left to the root's
//! udev). The archive layout is supermin's unchanged. Compressed modules are decompressed here, in-process,
//! because the init uses `init_module`, which only takes raw ELF.
//!
//! This module does not choose the kernel or the modules directory
//! (`crate::kernel` does) and does not build or choose the init
//! ([`crate::init`] does; it comes in as bytes).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::fnmatch::fnmatch;
use crate::image::cpio::CpioWriter;

/// Basename patterns (fnmatch `*` only) of the modules the init loads, with
/// the reason for each: the drivers of every device libguestfs can give the
/// appliance VM, and what mounting the root needs (issue 12).
///
/// They must all be loaded here, not later: libguestfs's /init runs a bare
/// `udevadm trigger`, whose default action is `change` (docs/libguestfs-side.md,
/// "What libguestfs's /init needs"), and udev's
/// `80-drivers.rules` loads drivers by modalias only on `add`, so a driver
/// missing from the initrd is never loaded (measured: without
/// `virtio_console` guestfsd cannot open its virtio-serial channel and the
/// launch fails). Filesystem and device-mapper modules are different: the
/// kernel and /init load those on demand with the root's modprobe.
///
/// supermin's list (`ext2 ext4 virtio* libata* piix* sd_mod ata_piix crc*
/// libcrc* ibmvscsic ibmvscsi libnvdimm nd_pmem nd_btt nfit`: 52 modules on
/// Debian 12, docs/supermin-compat.md, "Module selection") also loads drivers for devices libguestfs never
/// attaches (persistent memory, balloon, input, memory hotplug, virtio
/// crypto, virtiofs) and every crc algorithm; one by one that is ~0.5 s of a
/// TCG boot. This list is a subset of supermin's, so an initrd of ours
/// never loads a module supermin's would not.
pub(crate) const MODULE_WHITELIST: &[(&str, &str)] = &[
    ("ext2.ko*", "the root image is mounted as ext2 (older kernels have a separate driver)"),
    ("ext4.ko*", "modern kernels mount ext2 with the ext4 driver"),
    (
        "crc32c_generic.ko*",
        "ext4 allocates the `crc32c` checksum at every mount since Linux 5.19 and fails without it; \
         the initramfs has no modprobe to load it on demand",
    ),
    ("crc32c-intel.ko*", "the faster `crc32c` on x86 (SSE4.2), preferred by the crypto API when loaded"),
    ("virtio_pci.ko*", "the PCI transport of every virtio device (x86, aarch64 virt, ppc64)"),
    ("virtio_mmio.ko*", "the MMIO transport, for machines without PCI (32-bit ARM)"),
    ("virtio_scsi.ko*", "libguestfs attaches the appliance disk and user disks as scsi-hd on virtio-scsi"),
    ("sd_mod.ko*", "SCSI disk driver: the root disk is a scsi-hd"),
    ("virtio_blk.ko*", "disks added with iface=virtio"),
    ("libata.ko*", "disks added with iface=ide"),
    ("ata_piix.ko*", "the PIIX IDE controller of qemu's PC machine, for iface=ide disks"),
    ("virtio_console.ko*", "virtio-serial: guestfsd's channel /dev/virtio-ports/org.libguestfs.channel.0"),
    ("virtio-rng.ko*", "libguestfs adds virtio-rng-pci so the appliance has entropy at once"),
    ("virtio_net.ko*", "the network of guestfs_set_network (guestfs_network=1)"),
    ("ibmvscsic.ko*", "POWER virtual SCSI client (ppc64 guests), older name"),
    ("ibmvscsi.ko*", "POWER virtual SCSI client (ppc64 guests)"),
];

/// Basename patterns excluded even when whitelisted, with the reason.
/// (Nothing in today's whitelist matches one; kept so a broadened pattern
/// cannot pull it in.)
pub(crate) const MODULE_BLACKLIST: &[(&str, &str)] =
    &[("virtio-gpu.ko*", "a large DRM driver the appliance never needs at boot (supermin excludes it)")];

/// Compression suffixes the kernel may use for modules, removed from the name
/// written to the initrd.
const COMPRESSION_SUFFIXES: &[&str] = &[".xz", ".zst", ".gz"];

/// Errors from selecting modules and writing the initrd.
#[derive(Debug, thiserror::Error)]
pub enum InitrdError {
    /// The modules directory has no `modules.dep`.
    #[error("{path}: not found; the modules directory has not been indexed: run `depmod {version}` (as root) and try again")]
    NoModulesDep {
        /// The missing `modules.dep`.
        path: PathBuf,
        /// The kernel version (last component of the modules directory), for the hint.
        version: String,
    },
    /// Reading a file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A compressed module could not be decompressed.
    #[error("decompressing kernel module {path}: {source}; the file may be truncated: reinstall the kernel package")]
    Decompress {
        /// The module file.
        path: PathBuf,
        /// The decoder's error.
        source: io::Error,
    },
    /// Two selected modules would have the same file name in the flat initrd.
    #[error("kernel modules {first} and {second} have the same name {name}; the initrd is flat and cannot hold both: check modules.dep (run depmod)")]
    DuplicateName {
        /// The name in the initrd.
        name: String,
        /// The module kept first.
        first: PathBuf,
        /// The clashing module.
        second: PathBuf,
    },
    /// The init is not a static ELF executable.
    #[error("the appliance init ({len} bytes) is not a statically linked ELF executable; the initramfs holds no libc: link it with -C target-feature=+crt-static (the built-in init, from build.rs, is)")]
    InitNotStatic {
        /// Size of the rejected init.
        len: usize,
    },
    /// Writing the archive failed.
    #[error("writing the initrd: {0}")]
    Write(#[source] io::Error),
}

/// A kernel module chosen for the initrd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitrdModule {
    /// The module file on the host (possibly compressed).
    pub(crate) source: PathBuf,
    /// Its file name in the initrd: the basename with any compression
    /// suffix removed (e.g. `ext4.ko`).
    pub name: String,
}

/// What [`write_initrd`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitrdStats {
    /// Number of modules in the archive.
    pub modules: usize,
    /// Size of the archive in bytes.
    pub(crate) bytes: u64,
}

/// Chooses the initrd modules of `modules_dir` (e.g. `/lib/modules/6.1.0-56-amd64`)
/// and returns them in load order: every module after all of its
/// dependencies, each once.
///
/// Whitelisted modules are visited in byte order of their `modules.dep`
/// path; each visit first visits its dependencies (also sorted), then appends
/// the module (supermin's order, docs/supermin-compat.md, "Module
/// selection"). Dependencies are included
/// even when not whitelisted. Lines without `:` are ignored. An empty result
/// is not an error (a kernel may have everything built in).
///
/// # Errors
/// [`InitrdError::NoModulesDep`] when `modules.dep` is missing,
/// [`InitrdError::Read`] when it cannot be read, and
/// [`InitrdError::DuplicateName`] when two selected modules share a name.
pub fn select_modules(modules_dir: &Path) -> Result<Vec<InitrdModule>, InitrdError> {
    let dep_path = modules_dir.join("modules.dep");
    let text = match crate::bounded::read_to_string(&dep_path, crate::bounded::DATABASE_MAX) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let version =
                modules_dir.file_name().map(|v| v.to_string_lossy().into_owned()).unwrap_or_default();
            return Err(InitrdError::NoModulesDep { path: dep_path, version });
        }
        Err(source) => return Err(InitrdError::Read { path: dep_path, source }),
    };
    let deps = parse_modules_dep(&text);
    let order = dependency_order(&deps);

    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let mut modules = Vec::with_capacity(order.len());
    for path in order {
        let source = modules_dir.join(path);
        let name = initrd_name(path);
        if let Some(first) = seen.get(&name) {
            return Err(InitrdError::DuplicateName { name, first: first.clone(), second: source });
        }
        seen.insert(name.clone(), source.clone());
        modules.push(InitrdModule { source, name });
    }
    Ok(modules)
}

/// Parses `modules.dep` into module path -> dependency paths. Lines without
/// `:` are skipped (supermin 5.2.2 crashed on them; HEAD ignores them).
fn parse_modules_dep(text: &str) -> BTreeMap<&str, Vec<&str>> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(module, deps)| (module.trim(), deps.split_whitespace().collect()))
        .filter(|(module, _)| !module.is_empty())
        .collect()
}

/// The dependency-first DFS over the whitelisted modules of `deps`.
fn dependency_order<'a>(deps: &BTreeMap<&'a str, Vec<&'a str>>) -> Vec<&'a str> {
    let mut visited = BTreeSet::new();
    let mut order = Vec::new();
    // BTreeMap keys iterate in byte order, as supermin's sorted list.
    for &module in deps.keys().filter(|m| is_wanted(basename(m))) {
        visit(module, deps, &mut visited, &mut order);
    }
    order
}

fn visit<'a>(
    module: &'a str,
    deps: &BTreeMap<&'a str, Vec<&'a str>>,
    visited: &mut BTreeSet<&'a str>,
    order: &mut Vec<&'a str>,
) {
    // Marking before recursing makes a (malformed) dependency cycle finite.
    if !visited.insert(module) {
        return;
    }
    if let Some(module_deps) = deps.get(module) {
        let mut sorted = module_deps.clone();
        sorted.sort_unstable();
        for dep in sorted {
            visit(dep, deps, visited, order);
        }
    }
    order.push(module);
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// On the whitelist and not on the blacklist. Basenames hold no `/`, so the
/// shared [`fnmatch`]'s `*` crossing `/` changes nothing here.
fn is_wanted(name: &str) -> bool {
    let matches = |pat: &str| fnmatch(pat.as_bytes(), name.as_bytes());
    MODULE_WHITELIST.iter().any(|(pat, _)| matches(pat))
        && !MODULE_BLACKLIST.iter().any(|(pat, _)| matches(pat))
}

/// The module's file name in the initrd: basename minus compression suffix.
fn initrd_name(path: &str) -> String {
    let base = basename(path);
    COMPRESSION_SUFFIXES.iter().find_map(|suffix| base.strip_suffix(suffix)).unwrap_or(base).to_owned()
}

/// Writes the initrd to `out`: an uncompressed newc archive holding `.`,
/// `init` (mode 0755), `modules` (the module names in the given order, one a
/// line) and each module's uncompressed `.ko`, all entries after `.` in byte
/// order of their names, every entry with uid/gid 0 and `mtime`.
///
/// `modules` must be in load order (as returned by [`select_modules`]);
/// compressed sources (`.xz`, `.zst`, `.gz`) are decompressed here.
///
/// # Errors
/// [`InitrdError::InitNotStatic`] if `init` is not a static ELF (see
/// [`is_static_elf`]); [`InitrdError::Read`] / [`InitrdError::Decompress`]
/// naming the module that failed; [`InitrdError::DuplicateName`];
/// [`InitrdError::Write`] for errors from `out` (including an mtime outside
/// the 32-bit newc range).
pub fn write_initrd(
    out: &mut impl Write,
    init: &[u8],
    modules: &[InitrdModule],
    mtime: i64,
) -> Result<InitrdStats, InitrdError> {
    if !is_static_elf(init) {
        return Err(InitrdError::InitNotStatic { len: init.len() });
    }
    let mut by_name: BTreeMap<&str, &InitrdModule> = BTreeMap::new();
    for module in modules {
        if let Some(first) = by_name.insert(&module.name, module) {
            return Err(InitrdError::DuplicateName {
                name: module.name.clone(),
                first: first.source.clone(),
                second: module.source.clone(),
            });
        }
    }
    let list: String = modules.iter().map(|m| format!("{}\n", m.name)).collect();

    // Byte order over all names, as `ls -1` under LANG=C in supermin. The
    // fixed entries cannot clash with module names, which end in `.ko`.
    enum Entry<'a> {
        Bytes(&'a [u8], u32),
        Module(&'a InitrdModule),
    }
    let mut entries: BTreeMap<&str, Entry> = BTreeMap::new();
    entries.insert("init", Entry::Bytes(init, 0o755));
    entries.insert("modules", Entry::Bytes(list.as_bytes(), 0o644));
    for (name, module) in &by_name {
        entries.insert(name, Entry::Module(module));
    }

    let mut counter = CountingWriter { inner: out, count: 0 };
    let mut cpio = CpioWriter::new(&mut counter, mtime);
    cpio.add_dir(".", 0o755).map_err(InitrdError::Write)?;
    for (name, entry) in entries {
        match entry {
            Entry::Bytes(data, perm) => cpio.add_file(name, perm, data).map_err(InitrdError::Write)?,
            Entry::Module(module) => add_module(&mut cpio, module)?,
        }
    }
    cpio.finish().map_err(InitrdError::Write)?;
    Ok(InitrdStats { modules: modules.len(), bytes: counter.count })
}

/// Adds one module, streaming an uncompressed file and decompressing a
/// compressed one into memory (modules are at most a few MiB).
fn add_module<W: Write>(cpio: &mut CpioWriter<W>, module: &InitrdModule) -> Result<(), InitrdError> {
    let path = &module.source;
    let read_err = |source| InitrdError::Read { path: path.clone(), source };
    let mut file = File::open(path).map_err(read_err)?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let data = if file_name.ends_with(".xz") {
        decompress(path, liblzma::read::XzDecoder::new_multi_decoder(file))?
    } else if file_name.ends_with(".zst") {
        let decoder = zstd::stream::read::Decoder::new(file)
            .map_err(|source| InitrdError::Decompress { path: path.clone(), source })?;
        decompress(path, decoder)?
    } else if file_name.ends_with(".gz") {
        decompress(path, flate2::read::MultiGzDecoder::new(file))?
    } else {
        let len = file.metadata().map_err(read_err)?.len();
        // A short read here means the file changed under us: report it
        // against the module, not as a generic write error.
        return cpio.add_file_from(&module.name, 0o644, len, &mut file).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => read_err(e),
            _ => InitrdError::Write(e),
        });
    };
    cpio.add_file(&module.name, 0o644, &data).map_err(InitrdError::Write)
}

fn decompress(path: &Path, mut decoder: impl Read) -> Result<Vec<u8>, InitrdError> {
    let mut data = Vec::new();
    decoder
        .read_to_end(&mut data)
        .map_err(|source| InitrdError::Decompress { path: path.to_path_buf(), source })?;
    Ok(data)
}

struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// ELF program header types and dynamic tags we look at.
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// Returns whether `bytes` is an ELF file that needs no dynamic loader and no
/// shared library: no `PT_INTERP` program header and no `DT_NEEDED` entry in
/// its dynamic section. That accepts both classic static executables and
/// static-pie ones (which do have a `PT_DYNAMIC`, for self-relocation).
///
/// Handles 32- and 64-bit, little- and big-endian ELF. Anything malformed or
/// truncated (including non-ELF data) gives `false`.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    check_static_elf(bytes).unwrap_or(false)
}

fn check_static_elf(bytes: &[u8]) -> Option<bool> {
    if bytes.get(..4)? != b"\x7fELF" {
        return None;
    }
    let wide = match bytes.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let big = match bytes.get(5)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let elf = ElfReader { bytes, wide, big };
    let (phoff, phentsize, phnum) = if wide {
        (elf.u64(0x20)?, elf.u16(0x36)?, elf.u16(0x38)?)
    } else {
        (u64::from(elf.u32(0x1c)?), elf.u16(0x2a)?, elf.u16(0x2c)?)
    };
    for i in 0..u64::from(phnum) {
        let ph = usize::try_from(phoff.checked_add(i * u64::from(phentsize))?).ok()?;
        // A program header cut off by the end of the file means a truncated
        // binary, which the kernel would refuse to run anyway.
        bytes.get(ph..ph.checked_add(usize::from(phentsize))?)?;
        match elf.u32(ph)? {
            PT_INTERP => return Some(false),
            PT_DYNAMIC => {
                let (offset, size) = if wide {
                    (elf.u64(ph + 8)?, elf.u64(ph + 32)?)
                } else {
                    (u64::from(elf.u32(ph + 4)?), u64::from(elf.u32(ph + 16)?))
                };
                if elf.dynamic_has_needed(usize::try_from(offset).ok()?, usize::try_from(size).ok()?)? {
                    return Some(false);
                }
            }
            _ => {}
        }
    }
    Some(true)
}

struct ElfReader<'a> {
    bytes: &'a [u8],
    wide: bool,
    big: bool,
}

impl ElfReader<'_> {
    fn take<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        self.bytes.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    fn u16(&self, at: usize) -> Option<u16> {
        let b = self.take(at)?;
        Some(if self.big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }
    fn u32(&self, at: usize) -> Option<u32> {
        let b = self.take(at)?;
        Some(if self.big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }
    fn u64(&self, at: usize) -> Option<u64> {
        let b = self.take(at)?;
        Some(if self.big { u64::from_be_bytes(b) } else { u64::from_le_bytes(b) })
    }
    /// Scans the dynamic section at `offset` (`size` bytes) for DT_NEEDED.
    fn dynamic_has_needed(&self, offset: usize, size: usize) -> Option<bool> {
        let entry = if self.wide { 16 } else { 8 };
        for at in (offset..offset.checked_add(size)?).step_by(entry) {
            let tag = if self.wide { self.u64(at)? } else { u64::from(self.u32(at)?) };
            match tag {
                DT_NULL => break,
                DT_NEEDED => return Some(true),
                _ => {}
            }
        }
        Some(false)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::cpio::read_newc;
    use crate::test_support::tool;
    use std::fs;

    /// A minimal little-endian ELF64 executable header with one program
    /// header of type `pt`, and, when `dynamic` is given, a PT_DYNAMIC
    /// segment holding those (tag, value) entries.
    pub(crate) fn fake_elf(interp: bool, dynamic: Option<&[(u64, u64)]>) -> Vec<u8> {
        let mut phdrs: Vec<(u32, u64, u64)> = vec![(1, 0, 0)]; // PT_LOAD
        if interp {
            phdrs.push((PT_INTERP, 0, 0));
        }
        let dyn_off = 64 + 56 * (phdrs.len() as u64 + 1);
        let dyn_bytes: Vec<u8> = dynamic
            .unwrap_or(&[])
            .iter()
            .chain(std::iter::once(&(DT_NULL, 0)))
            .flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes()))
            .collect();
        if dynamic.is_some() {
            phdrs.push((PT_DYNAMIC, dyn_off, dyn_bytes.len() as u64));
        }
        let mut elf = vec![0u8; 64];
        elf[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        elf[0x10] = 2; // ET_EXEC
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        for (pt, off, size) in phdrs {
            let mut ph = vec![0u8; 56];
            ph[..4].copy_from_slice(&pt.to_le_bytes());
            ph[8..16].copy_from_slice(&off.to_le_bytes());
            ph[32..40].copy_from_slice(&size.to_le_bytes());
            elf.extend(ph);
        }
        elf.resize(dyn_off as usize, 0);
        if dynamic.is_some() {
            elf.extend(dyn_bytes);
        }
        elf
    }

    #[test]
    fn static_elf_detection() {
        assert!(is_static_elf(&fake_elf(false, None)));
        // static-pie: PT_DYNAMIC with relocation tags only.
        assert!(is_static_elf(&fake_elf(false, Some(&[(7, 0), (8, 0)]))));
        assert!(!is_static_elf(&fake_elf(true, None)));
        assert!(!is_static_elf(&fake_elf(false, Some(&[(7, 0), (DT_NEEDED, 1)]))));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        let mut truncated = fake_elf(false, None);
        truncated.truncate(80);
        assert!(!is_static_elf(&truncated));
    }

    #[test]
    fn static_elf_detection_on_host_binaries() {
        // /bin/sh is dynamically linked on every Debian-like host.
        if let Ok(sh) = fs::read("/bin/sh") {
            assert!(!is_static_elf(&sh));
        }
        // This test binary links normally; only the init is static (build.rs).
        let me = fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me));
        assert!(is_static_elf(crate::init::EMBEDDED));
    }

    #[test]
    fn module_patterns_match_like_fnmatch() {
        let fnmatch_star = |p: &str, n: &str| fnmatch(p.as_bytes(), n.as_bytes());
        assert!(fnmatch_star("virtio*.ko*", "virtio_scsi.ko"));
        assert!(fnmatch_star("virtio*.ko*", "virtio.ko.xz"));
        assert!(fnmatch_star("sd_mod.ko*", "sd_mod.ko"));
        assert!(!fnmatch_star("sd_mod.ko*", "xsd_mod.ko"));
        assert!(!fnmatch_star("ext4.ko*", "ext4x.ko"));
        assert!(fnmatch_star("exact", "exact"));
        assert!(!fnmatch_star("exact", "exact2"));
        assert!(fnmatch_star("a*b*c", "abc"));
        assert!(!fnmatch_star("a*bc*c", "abc"));
    }

    const FIXTURE_DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/gpu/virtio-gpu.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_scsi.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_balloon.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/net/e1000.ko:
this line has no colon and is ignored
";

    fn fixture_dir(dep: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("modules.dep"), dep).unwrap();
        dir
    }

    #[test]
    fn selection_is_dependency_first_each_once_and_honours_the_lists() {
        let dir = fixture_dir(FIXTURE_DEP);
        let mods = select_modules(dir.path()).unwrap();
        let names: Vec<_> = mods.iter().map(|m| m.name.as_str()).collect();
        // Sorted whitelisted paths: drivers/scsi/sd_mod, drivers/virtio/virtio_scsi,
        // fs/ext4; virtio.ko comes in as a dependency. e1000, virtio_balloon
        // and virtio-gpu are not needed to mount the root.
        assert_eq!(
            names,
            [
                "scsi_common.ko",
                "scsi_mod.ko",
                "sd_mod.ko",
                "virtio.ko",
                "virtio_scsi.ko",
                "jbd2.ko",
                "mbcache.ko",
                "crc16.ko",
                "ext4.ko"
            ]
        );
        assert_eq!(mods[0].source, dir.path().join("kernel/drivers/scsi/scsi_common.ko"));
    }

    #[test]
    fn missing_modules_dep_says_run_depmod() {
        let dir = tempfile::tempdir().unwrap();
        let err = select_modules(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("modules.dep") && msg.contains("run `depmod"), "{msg}");
    }

    #[test]
    fn cycles_terminate_and_duplicates_are_refused() {
        let dir = fixture_dir("a/virtio_pci.ko: b/virtio_scsi.ko\nb/virtio_scsi.ko: a/virtio_pci.ko\n");
        let names: Vec<_> = select_modules(dir.path()).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["virtio_scsi.ko", "virtio_pci.ko"]);
        let dir = fixture_dir("a/sd_mod.ko:\nb/sd_mod.ko.xz:\n");
        assert!(matches!(select_modules(dir.path()), Err(InitrdError::DuplicateName { .. })));
    }

    /// Host modules directory of Debian's 6.1 kernel, if installed.
    fn host_modules_dir() -> Option<PathBuf> {
        let found = fs::read_dir("/lib/modules").ok().and_then(|rd| {
            let mut dirs: Vec<_> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().into_owned();
                    n.starts_with("6.1.0-") && n.ends_with("-amd64") && p.join("modules.dep").exists()
                })
                .collect();
            dirs.sort();
            dirs.pop()
        });
        if found.is_none() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but /lib/modules/6.1.0-*-amd64 is missing"
            );
            eprintln!("skipping: no /lib/modules/6.1.0-*-amd64 on this host");
        }
        found
    }

    /// The `modules` list supermin 5.2.2 produced on Debian 12 with kernel
    /// 6.1 (docs/supermin-compat.md, "Module selection").
    const OBSERVED_DEBIAN_61: &str = "crc32-pclmul crc32c-intel crct10dif_common crct10dif-pclmul \
        crc32_generic crc32c_generic crc64 crc64_rocksoft_generic crct10dif_generic libnvdimm nfit \
        scsi_common scsi_mod libata ata_piix virtio_ring virtio virtio_blk virtio-rng virtio_console \
        crypto_engine virtio_crypto failover net_failover virtio_net nd_btt nd_pmem nd_virtio \
        virtio_pmem crc-t10dif crc64-rocksoft t10-pi sd_mod virtio_scsi virtio_balloon virtio_dma_buf \
        virtio_input virtio_mem virtio_mmio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci \
        jbd2 mbcache crc16 ext4 fuse virtiofs crc-itu-t crc7 crc8 libcrc32c";

    /// Our list on Debian 12's kernel: the drivers of the devices libguestfs
    /// attaches and the root-mount stack, each module after its
    /// dependencies, every one a module supermin's initrd loads too (#12).
    #[test]
    fn host_kernel_selection_is_the_libguestfs_subset_of_supermins() {
        let Some(dir) = host_modules_dir() else {
            return;
        };
        let names: Vec<_> = select_modules(&dir).unwrap().into_iter().map(|m| m.name).collect();
        let expected = "crc32c-intel crc32c_generic scsi_common scsi_mod libata ata_piix virtio_ring \
            virtio virtio_blk virtio-rng virtio_console failover net_failover virtio_net crct10dif_common \
            crc-t10dif crc64 crc64-rocksoft t10-pi sd_mod virtio_scsi virtio_mmio virtio_pci_legacy_dev \
            virtio_pci_modern_dev virtio_pci jbd2 mbcache crc16 ext4";
        let expected: Vec<_> = expected.split_whitespace().map(|n| format!("{n}.ko")).collect();
        assert_eq!(names, expected);
        let supermin: Vec<_> = OBSERVED_DEBIAN_61.split_whitespace().map(|n| format!("{n}.ko")).collect();
        for name in &names {
            assert!(supermin.contains(name), "{name} is not in supermin's initrd");
        }
    }

    #[test]
    fn compressed_modules_are_decompressed_and_renamed() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Vec<u8> = (0..5000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let plain = dir.path().join("virtio.ko");
        fs::write(&plain, b"plain module").unwrap();
        let xz = dir.path().join("virtio_ring.ko.xz");
        let mut enc = liblzma::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(&raw).unwrap();
        fs::write(&xz, enc.finish().unwrap()).unwrap();
        let zst = dir.path().join("virtio_scsi.ko.zst");
        fs::write(&zst, zstd::stream::encode_all(&raw[..], 3).unwrap()).unwrap();
        let gz = dir.path().join("sd_mod.ko.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&raw).unwrap();
        fs::write(&gz, enc.finish().unwrap()).unwrap();
        fs::write(
            dir.path().join("modules.dep"),
            "virtio.ko:\nvirtio_ring.ko.xz:\nvirtio_scsi.ko.zst: virtio_ring.ko.xz virtio.ko\nsd_mod.ko.gz:\n",
        )
        .unwrap();

        let mods = select_modules(dir.path()).unwrap();
        let names: Vec<_> = mods.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["sd_mod.ko", "virtio.ko", "virtio_ring.ko", "virtio_scsi.ko"]);

        let mut out = Vec::new();
        let init = fake_elf(false, None);
        let stats = write_initrd(&mut out, &init, &mods, 1_000).unwrap();
        assert_eq!(stats, InitrdStats { modules: 4, bytes: out.len() as u64 });
        let entries = read_newc(&out).unwrap();
        let listed: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            listed,
            [".", "init", "modules", "sd_mod.ko", "virtio.ko", "virtio_ring.ko", "virtio_scsi.ko"]
        );
        let data = |name: &str| &entries.iter().find(|e| e.name == name).unwrap().data;
        assert_eq!(data("init"), &init);
        assert_eq!(data("modules"), b"sd_mod.ko\nvirtio.ko\nvirtio_ring.ko\nvirtio_scsi.ko\n");
        assert_eq!(data("virtio.ko"), b"plain module");
        for name in ["sd_mod.ko", "virtio_ring.ko", "virtio_scsi.ko"] {
            assert_eq!(data(name), &raw, "{name}");
        }
        let init_entry = entries.iter().find(|e| e.name == "init").unwrap();
        assert_eq!(init_entry.mode, 0o100_755);
        assert!(entries.iter().all(|e| e.mtime == 1_000 && e.uid == 0));
    }

    #[test]
    fn corrupt_compressed_module_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("virtio.ko.xz");
        fs::write(&bad, b"not xz at all").unwrap();
        let mods = [InitrdModule { source: bad.clone(), name: "virtio.ko".into() }];
        let err = write_initrd(&mut Vec::new(), &fake_elf(false, None), &mods, 0).unwrap_err();
        assert!(matches!(&err, InitrdError::Decompress { path, .. } if *path == bad), "{err}");
    }

    #[test]
    fn dynamic_init_is_refused() {
        let err = write_initrd(&mut Vec::new(), &fake_elf(true, None), &[], 0).unwrap_err();
        assert!(matches!(err, InitrdError::InitNotStatic { .. }));
    }

    #[test]
    fn file_and_cpio_read_the_initrd() {
        let (Some(file), Some(cpio)) = (tool("file"), tool("cpio")) else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("b.ko"), b"module b").unwrap();
        fs::write(dir.path().join("a.ko.gz"), {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(b"module a").unwrap();
            enc.finish().unwrap()
        })
        .unwrap();
        let mods = [
            InitrdModule { source: dir.path().join("b.ko"), name: "b.ko".into() },
            InitrdModule { source: dir.path().join("a.ko.gz"), name: "a.ko".into() },
        ];
        let initrd = dir.path().join("initrd");
        let init = fake_elf(false, None);
        write_initrd(&mut File::create(&initrd).unwrap(), &init, &mods, 1_600_000_000).unwrap();

        let out = std::process::Command::new(file).arg("-b").arg(&initrd).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ASCII cpio archive (SVR4 with no CRC)");

        let out =
            std::process::Command::new(&cpio).arg("-t").stdin(File::open(&initrd).unwrap()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), ".\na.ko\nb.ko\ninit\nmodules\n");

        let extract = dir.path().join("x");
        fs::create_dir(&extract).unwrap();
        let out = std::process::Command::new(&cpio)
            .args(["-i", "--quiet", "--no-absolute-filenames"])
            .current_dir(&extract)
            .stdin(File::open(&initrd).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(fs::read(extract.join("init")).unwrap(), init);
        assert_eq!(fs::read(extract.join("a.ko")).unwrap(), b"module a");
        assert_eq!(fs::read(extract.join("modules")).unwrap(), b"b.ko\na.ko\n");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(extract.join("init")).unwrap().permissions().mode() & 0o777, 0o755);
    }
}
