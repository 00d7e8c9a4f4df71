//! Block devices in sysfs (`/sys/dev/block/M:m`): the real disks under a
//! device (through partitions, device-mapper and md `slaves`), whether
//! each says it is rotational (`queue/rotational`), and whether it is a
//! disk a hypervisor provides, whose rotational flag means nothing.
//!
//! Reading only, from a sysfs root the caller passes (tests use
//! `tests/fixtures/health/sys`); what the facts mean for speed is
//! `health/location.rs`'s.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// Errors reading sysfs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SysfsError {
    /// The block device is not in `SYS/dev/block`.
    #[error("resolving block device {path}: {source}")]
    Resolve {
        /// The `dev/block/M:m` link.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A real disk under a file system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Disk {
    /// Kernel name (`sda`, `nvme0n1`, `vda`).
    pub(crate) name: String,
    /// `queue/rotational`; `None` when unreadable.
    pub(crate) rotational: Option<bool>,
    /// A disk a hypervisor emulates or provides (virtio, Xen, Hyper-V,
    /// VMware, QEMU-emulated SCSI/ATA, cloud block storage): its rotational
    /// flag is whatever the hypervisor chose (virtio-blk always says 1) and
    /// says nothing about the storage behind it.
    #[serde(rename = "virtual")]
    pub(crate) is_virtual: bool,
    /// What in sysfs shows it is virtual (`virtio bus`, `vendor QEMU`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) virtual_evidence: Option<String>,
}

#[cfg(test)]
impl Disk {
    /// A disk with a trustworthy rotational flag (tests, fixtures).
    pub(crate) fn physical(name: &str, rotational: Option<bool>) -> Disk {
        Disk { name: name.into(), rotational, is_virtual: false, virtual_evidence: None }
    }
}

/// Device-path components (prefixes) of buses that only hypervisors
/// provide, with what they are. The sysfs path of a disk runs through its
/// bus: `.../virtio1/block/vda`, `.../virtio2/host0/.../block/sda`
/// (virtio-scsi), `/sys/devices/vbd-51712/block/xvda` (Xen blkfront),
/// `.../VMBUS:00/<guid>/host2/.../block/sda` (Hyper-V storvsc).
const VIRTUAL_BUSES: &[(&str, &str)] =
    &[("virtio", "virtio bus"), ("vbd-", "Xen virtual block device"), ("VMBUS:", "Hyper-V VMBus")];

/// Strings in a disk's `device/vendor` or `device/model` that name a
/// hypervisor's emulated disk or a cloud volume, with what they are.
const VIRTUAL_IDS: &[(&str, &str)] = &[
    // virtio's PCI vendor id, which virtio-blk shows as device/vendor.
    ("0x1af4", "virtio device"),
    // scsi-hd/ide-hd: vendor "QEMU", or vendor "ATA" model "QEMU HARDDISK".
    ("QEMU", "QEMU emulated disk"),
    ("VBOX", "VirtualBox virtual disk"),
    ("VMware", "VMware virtual disk"),
    // Hyper-V: vendor "Msft", model "Virtual Disk".
    ("Msft", "Hyper-V virtual disk"),
    // GCE: SCSI "Google PersistentDisk", NVMe "nvme_card-pd".
    ("PersistentDisk", "Google persistent disk"),
    ("nvme_card-pd", "Google persistent disk"),
    ("Amazon Elastic Block Store", "AWS EBS volume"),
];

/// Why the disk at sysfs directory `dir` is virtual, if it is. `sys` is
/// the sysfs root `dir` lies in (only the part below it is looked at).
fn virtual_evidence(sys: &Path, dir: &Path) -> Option<String> {
    let below = std::fs::canonicalize(sys).ok().and_then(|s| dir.strip_prefix(s).ok().map(Path::to_path_buf));
    let below = below.unwrap_or_else(|| dir.to_path_buf());
    for component in below.components() {
        let c = component.as_os_str().to_string_lossy();
        if let Some((_, what)) = VIRTUAL_BUSES.iter().find(|(prefix, _)| c.starts_with(prefix)) {
            return Some(format!("{what} ({c})"));
        }
    }
    for file in ["device/vendor", "device/model"] {
        let Ok(text) = crate::bounded::read_to_string(&dir.join(file), crate::bounded::PROC_MAX) else {
            continue;
        };
        let text = text.trim();
        if let Some((_, what)) = VIRTUAL_IDS.iter().find(|(id, _)| text.contains(id)) {
            return Some(format!("{what} ({file} {text})"));
        }
    }
    None
}

/// The real disks under block device `major:minor`, following partitions to
/// their disk and device-mapper/md devices to their `slaves`.
///
/// Errors: the device is not in `SYS/dev/block`.
pub(crate) fn disks_of(sys: &Path, major: u32, minor: u32) -> Result<Vec<Disk>, SysfsError> {
    let link = sys.join("dev/block").join(format!("{major}:{minor}"));
    let dir =
        std::fs::canonicalize(&link).map_err(|source| SysfsError::Resolve { path: link.clone(), source })?;
    let mut out = Vec::new();
    walk_device(sys, &dir, 0, &mut out);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup();
    Ok(out)
}

fn walk_device(sys: &Path, dir: &Path, depth: usize, out: &mut Vec<Disk>) {
    // Stacks are shallow; the bound only guards against a loop in a broken
    // (or fake) sysfs.
    if depth > 16 {
        return;
    }
    let slaves: Vec<PathBuf> = std::fs::read_dir(dir.join("slaves"))
        .map(|rd| rd.filter_map(|e| e.ok()).filter_map(|e| std::fs::canonicalize(e.path()).ok()).collect())
        .unwrap_or_default();
    if !slaves.is_empty() {
        for s in slaves {
            walk_device(sys, &s, depth + 1, out);
        }
        return;
    }
    if dir.join("partition").exists() {
        if let Some(parent) = dir.parent() {
            walk_device(sys, parent, depth + 1, out);
            return;
        }
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let rotational = crate::bounded::read_to_string(&dir.join("queue/rotational"), crate::bounded::PROC_MAX)
        .ok()
        .and_then(|t| match t.trim() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        });
    let virtual_evidence = virtual_evidence(sys, dir);
    out.push(Disk { name, rotational, is_virtual: virtual_evidence.is_some(), virtual_evidence });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/health")
    }

    #[test]
    fn partitions_dm_and_md_resolve_to_their_disks() {
        let sys = fixtures().join("sys");
        let names = |maj, min| {
            disks_of(&sys, maj, min)
                .unwrap()
                .into_iter()
                .map(|d| format!("{}={:?}", d.name, d.rotational))
                .collect::<Vec<_>>()
        };
        // sda1 -> sda (rotational)
        assert_eq!(names(8, 1), ["sda=Some(true)"]);
        // nvme0n1p1 -> nvme0n1 (SSD)
        assert_eq!(names(259, 1), ["nvme0n1=Some(false)"]);
        // dm-0 (LVM) on nvme0n1p2 -> nvme0n1
        assert_eq!(names(253, 0), ["nvme0n1=Some(false)"]);
        // md0 on sda2 + sdb1 -> sda, sdb
        assert_eq!(names(9, 0), ["sda=Some(true)", "sdb=Some(true)"]);
        // dm-1 (crypt) on md0 -> the md's disks
        assert_eq!(names(253, 1), ["sda=Some(true)", "sdb=Some(true)"]);
        assert!(disks_of(&sys, 1, 99).is_err());
        // None of these is virtual (dm and md live under devices/virtual,
        // which is not a hypervisor's bus).
        for (maj, min) in [(8, 1), (259, 1), (253, 0), (9, 0), (253, 1)] {
            assert!(disks_of(&sys, maj, min).unwrap().iter().all(|d| !d.is_virtual), "{maj}:{min}");
        }
    }
}
