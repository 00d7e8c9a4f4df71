//! Writing a planned appliance into a staging directory: the targets
//! resolved and checked, the tree composed (base archives unpacked into a
//! scratch file, package files, hostfiles, modules), free space checked,
//! then the kernel written (crate::build::kernel_file), the initrd (with the init found by
//! [`crate::init::choose`]) and the root image written, each hashed on the
//! way into the manifest, README.fixed and manifest.toml rendered, and the
//! tarball compressed.
//!
//! It leaves to others: what goes in (`plan`), the lock and the publish
//! step (`mod.rs`), and the formats themselves (`crate::image`). Each step
//! is a function named for what it does; [`write_appliance`] runs them in
//! order.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::kernel_file::{self, KernelSource};
use super::plan::BuildPlan;
use super::spec::{absolute, ApplianceSpec, PublishOptions};
use crate::compose::{self, HostSources, TreeParts};
use crate::digest::{self, HashingWriter};
use crate::hashcache::HashCache;
use crate::hostdata;
use crate::image::files::FileTree;
use crate::image::hostfile::Probed;
use crate::image::scratch::Scratch;
use crate::image::{ext2, initrd, tarball};
use crate::input::Inputs;
use crate::manifest::KernelFormat;
use crate::manifest::{self, Manifest, ManifestFile};
use crate::output::{self, Staging};
use crate::printer::{human_bytes, Printer};

/// The README.fixed template; see [`render_readme`].
const README_TEMPLATE: &str = include_str!("../../templates/README.fixed");

/// Space we keep free beyond the estimate, so a build never fills a disk
/// to the last block.
const SPACE_MARGIN: u64 = 64 << 20;

/// Where a build writes, as absolute paths, so every message names a real
/// place.
#[derive(Debug, Clone)]
pub(crate) struct Targets {
    /// The output directory (resolved, its parent pinned and checked).
    pub(crate) dir: Option<PathBuf>,
    /// The tarball.
    pub(crate) tar: Option<PathBuf>,
    /// What the lock, the staging directory and the scratch file sit
    /// beside: the directory, else the tarball.
    pub(crate) lock_target: PathBuf,
}

/// Resolve and check the targets of `publish` before anything is created
/// beside them: DIR's parent is created, a parent others can write without
/// the sticky bit is refused, DIR must be an appliance (or absent), and a
/// tarball name must not be a directory.
pub(crate) fn resolve_targets(publish: &PublishOptions) -> Result<Targets> {
    let dir = match &publish.dir {
        Some(d) => Some(output::resolve_target(&absolute(d))?),
        None => None,
    };
    let tar = publish.tar.as_deref().map(absolute);
    if let Some(dir) = &dir {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating parent directory {}", parent.display()))?;
        }
        output::pin_parent(dir)?;
        output::check_target(dir)?;
    }
    if let Some(tar) = &tar {
        if tar.is_dir() {
            bail!("--tar {}: is a directory; give a file name such as appliance.tar.gz", tar.display());
        }
    }
    let lock_target =
        dir.clone().or_else(|| tar.clone()).context("nothing to build: give DIR or --tar FILE")?;
    Ok(Targets { dir, tar, lock_target })
}

/// Remove what interrupted builds left beside the target (call it holding
/// the lock, so no build can be using them).
pub(crate) fn clean_leftovers(targets: &Targets, printer: &Printer) -> Result<()> {
    let leftovers = output::clean_leftovers(&targets.lock_target)?;
    for old in leftovers.removed {
        printer.stage(format!("output: removed leftover {} (from an interrupted build)", old.display()));
    }
    for why in leftovers.kept {
        printer.warn(why);
    }
    Ok(())
}

/// A finished appliance in its staging directory, not yet published.
pub(crate) struct Staged {
    /// The staging directory holding every file.
    pub(crate) staging: Staging,
    /// The manifest as written.
    pub(crate) manifest: Manifest,
    /// Entries in the root image.
    pub(crate) files: usize,
    /// Bytes of file data in the root image.
    pub(crate) data_bytes: u64,
}

/// Write the appliance `plan` describes into a new staging directory beside
/// `targets.lock_target`, and the tarball if one is asked for. `hashes`
/// may know the remembered vmlinux (crate::build::kernel_file).
pub(crate) fn write_appliance(
    spec: &ApplianceSpec,
    plan: &BuildPlan,
    targets: &Targets,
    printer: &Printer,
    hashes: &mut HashCache,
) -> Result<Staged> {
    let image_mode = image_mode(spec, plan, printer);
    if let Some(dir) = &targets.dir {
        check_not_inside_inputs(dir, &plan.inputs)?;
    }
    let timestamp = plan.timestamp;
    let mut manifest = plan.manifest.clone();
    let uuid = manifest.root_uuid();
    let staging = Staging::create(&targets.lock_target)?;
    let source =
        KernelSource { path: &plan.kernel.path, sha256: &manifest.kernel.sha256, host_cpu: &spec.host_cpu };
    // The kernel and the initrd are written on threads of their own while
    // the tree is composed and the root written: decompressing the kernel
    // is a second of one core (crate::build::kernel_file), and neither
    // needs the tree.
    // Where no thread can be started they are written here, after the root.
    let hashes = std::sync::Mutex::new(hashes);
    let kernel_job = || {
        let mut hashes = hashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        kernel_file::write_kernel(spec.kernel_format, &source, &staging, targets.dir.as_deref(), &mut hashes)
    };
    let initrd_job = || write_initrd(plan, &staging, timestamp, printer);
    let (kernel, initrd, rest) = std::thread::scope(|s| {
        let kernel = crate::cores::try_spawn(s, kernel_job);
        let initrd = crate::cores::try_spawn(s, initrd_job);
        let rest = (|| -> Result<_> {
            let (tree, stats, probed) = compose_tree(spec, plan, &targets.lock_target, printer)?;
            check_space(&staging, &plan.kernel.path, spec.kernel_format, &stats)?;
            let root_record =
                write_root(spec, &tree, probed, &stats, &staging, uuid, timestamp, image_mode, printer)?;
            Ok((stats, root_record))
        })();
        let joined = |what: &str| anyhow::anyhow!("writing the {what}: the thread panicked");
        (
            crate::cores::join_or_run(kernel, kernel_job).unwrap_or_else(|_| Err(joined("kernel"))),
            crate::cores::join_or_run(initrd, initrd_job).unwrap_or_else(|_| Err(joined("initrd"))),
            rest,
        )
    });
    let (stats, root_record) = rest?;
    let (initrd_stats, initrd_record) = initrd?;
    let kernel = kernel?;
    printer.stage(format!("kernel: {} ({})", kernel.how, human_bytes(kernel.record.size)));
    let kernel_record = kernel.record;

    use std::os::unix::fs::MetadataExt;
    let root_out = staging.path().join("root");
    manifest.built_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    manifest.output = manifest::ManifestOutput {
        root_uuid: ext2::format_uuid(&uuid),
        files: stats.entries as u64,
        root_allocated_bytes: std::fs::metadata(&root_out).map(|m| m.blocks() * 512).unwrap_or(0),
        initrd_bytes: initrd_stats.bytes,
        initrd_modules: initrd_stats.modules as u64,
        kernel_image: kernel.image.name().into(),
    };
    manifest.outputs = vec![kernel_record, initrd_record, root_record];
    let readme = render_readme(&manifest, targets.dir.as_deref().unwrap_or(Path::new("DIR")));
    write_file(&staging, "README.fixed", readme.as_bytes())?;
    write_file(&staging, manifest::MANIFEST_NAME, manifest.to_toml().as_bytes())?;

    if let Some(tar) = &targets.tar {
        write_tarball(&staging, tar, timestamp, image_mode, printer)?;
    }
    Ok(Staged { staging, manifest, files: stats.entries, data_bytes: stats.data_bytes })
}

/// The root image's (and tarball's) mode: host secrets in the hostfiles
/// are said once, and let no one but the owner read the image that holds
/// them.
fn image_mode(spec: &ApplianceSpec, plan: &BuildPlan, printer: &Printer) -> u32 {
    let private = hostdata::private_hostfiles(&spec.root, &plan.manifest.host_files);
    if private.is_empty() {
        return 0o644;
    }
    printer.warn(format!(
        "hostfiles copy {} file(s) into the root image that not everyone may read on this host: {}; the root image (and tarball) get mode 0600, so only their owner can boot them",
        private.len(),
        private.join(", ")
    ));
    0o600
}

/// Unpack the base archives and compose the appliance tree, with its host
/// files probed. Base archives
/// are unpacked here, once: member data is streamed into an unnamed scratch
/// file beside the output (never into memory), sizes are checked against
/// the image first, and holes stay holes.
fn compose_tree(
    spec: &ApplianceSpec,
    plan: &BuildPlan,
    lock_target: &Path,
    printer: &Printer,
) -> Result<(FileTree, compose::ComposeStats, Probed)> {
    printer.progress("unpacking base archives, listing package files...");
    let scratch_dir = match lock_target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let unpack_base = || -> Result<_> {
        let mut scratch = Scratch::create_in(&scratch_dir)
            .with_context(|| format!("creating a scratch file in {}", scratch_dir.display()))?;
        let base = plan.inputs.extract_base(&mut scratch, spec.size)?;
        printer.stage(format!(
            "base: {} members, {} of file data kept in a scratch file in {}",
            base.member_count(),
            human_bytes(scratch.stored_bytes()),
            scratch_dir.display()
        ));
        Ok(base)
    };
    let list_modules = || compose::list_modules(&plan.kernel, plan.timestamp);
    let inspect_host = || -> Result<_> {
        let package_files = plan.db.files(&plan.resolution.packages)?;
        Ok(compose::inspect_host(&HostSources {
            root: &spec.root,
            inputs: &plan.inputs,
            package_files: &package_files,
            hostfiles: &plan.hostfiles,
            timestamp: plan.timestamp,
        }))
    };
    // The three sources are independent until the tree: unpacking (gunzip)
    // and listing the modules directory (a serial walk) each on a thread of
    // its own, while this one reads the package database's file lists and
    // inspects every listed path on the host.
    let (base, (modules, host)) =
        crate::cores::alongside(unpack_base, || crate::cores::alongside(list_modules, inspect_host));
    let (base, host) = (base?, host?);
    printer.progress("composing the appliance tree...");
    // The host files are probed (for the layout: crate::image::hostfile)
    // beside the composition, a serial stretch with a core to spare.
    let host_files = compose::host_files(&host, &modules);
    let parts = TreeParts {
        root: &spec.root,
        base: &base,
        host,
        kernel: &plan.kernel,
        modules,
        timestamp: plan.timestamp,
    };
    let (probed, composed) =
        crate::cores::alongside(|| Probed::probe_all(&host_files), || compose::compose(parts));
    let (tree, stats) = composed?;
    printer.stage(format!(
        "tree: {} package paths, {} config files dropped, {} excluded, {} hostfiles, {} missing on host, {} module files -> {} entries, {}",
        stats.package_paths,
        stats.config_files,
        stats.excluded,
        stats.hostfiles,
        stats.missing_on_host,
        stats.module_files,
        stats.entries,
        human_bytes(stats.data_bytes)
    ));
    Ok((tree, stats, probed))
}

/// Refuse to start writing when the staging directory's file system has
/// less room than the appliance needs (with [`SPACE_MARGIN`] to spare).
fn check_space(
    staging: &Staging,
    kernel: &Path,
    format: KernelFormat,
    stats: &compose::ComposeStats,
) -> Result<()> {
    let mut kernel_len = std::fs::metadata(kernel).map(|m| m.len()).unwrap_or(0);
    if format != KernelFormat::Copy {
        // Uncompressed: about 8 times the file (xz); gzip's ratio is lower.
        kernel_len *= 10;
    }
    let need = estimate_bytes(stats.data_bytes, stats.entries as u64) + kernel_len + SPACE_MARGIN;
    let have = output::available_bytes(staging.path())?;
    if have < need {
        bail!(
            "not enough free space in {}: the appliance needs about {}, {} is available; free some space or choose a directory on another filesystem",
            staging.path().parent().unwrap_or(staging.path()).display(),
            human_bytes(need),
            human_bytes(have)
        );
    }
    Ok(())
}

/// The initrd: the init ([`crate::init::choose`]) and the kernel modules
/// it loads, hashed on the way to the file.
fn write_initrd(
    plan: &BuildPlan,
    staging: &Staging,
    timestamp: i64,
    printer: &Printer,
) -> Result<(initrd::InitrdStats, ManifestFile)> {
    printer.progress("writing initrd...");
    let init = crate::init::choose()?;
    printer.stage(format!("initrd: using {}", init.source));
    let modules = initrd::select_modules(&plan.kernel.modules_dir)?;
    let initrd_out = staging.path().join("initrd");
    let file = staging.create_file("initrd", 0o644)?;
    // Hashed on the way to the buffer: every byte the file gets.
    let mut w = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let s = initrd::write_initrd(&mut w, &init.bytes, &modules, timestamp)?;
    let (_, size, hash) = w.finish().with_context(|| format!("writing {}", initrd_out.display()))?;
    printer.stage(format!("initrd: {} modules, {}", s.modules, human_bytes(s.bytes)));
    Ok((s, ManifestFile { name: "initrd".into(), size, algorithm: digest::SHA256.into(), hash }))
}

/// The root image: the tree as ext2, with mode `image_mode` (it follows the
/// most private source, see [`image_mode`]).
#[allow(clippy::too_many_arguments)]
fn write_root(
    spec: &ApplianceSpec,
    tree: &FileTree,
    probed: Probed,
    stats: &compose::ComposeStats,
    staging: &Staging,
    uuid: [u8; 16],
    timestamp: i64,
    image_mode: u32,
    printer: &Printer,
) -> Result<ManifestFile> {
    printer.progress(format!("writing root image ({} of files)...", human_bytes(stats.data_bytes)));
    let root_out = staging.path().join("root");
    let file = staging.create_file("root", image_mode)?;
    // File data copied through our buffer (into tmpfs from another file
    // system) is hashed on its way; what the kernel copied without us is
    // read back from the page cache afterwards (crate::digest).
    let image_digest = digest::ImageDigest::new(spec.size);
    let algorithm = image_digest.algorithm();
    let opts = ext2::Ext2Options { size: spec.size, uuid, timestamp, label: None };
    let ext2_stats = ext2::write_image(tree, &file, &opts, &image_digest, probed)
        .with_context(|| format!("writing root image {}", root_out.display()))?;
    let heard = image_digest.units_heard();
    let hash =
        image_digest.finish(&file).with_context(|| format!("hashing root image {}", root_out.display()))?;
    for (path, err) in &ext2_stats.unreadable {
        printer.warn(format!("{}: {err} (copied as an empty file, as supermin does)", path.display()));
    }
    printer.stage(format!(
        "root: {} inodes, {} blocks of {} bytes, UUID {}, digest {} ({} blocks hashed while writing)",
        ext2_stats.inodes,
        ext2_stats.blocks_used,
        ext2_stats.block_size,
        ext2::format_uuid(&uuid),
        algorithm,
        heard
    ));
    Ok(ManifestFile { name: "root".into(), size: spec.size, algorithm: algorithm.into(), hash })
}

/// The tarball of the staged files: `.tar.xz` when the name ends in `.xz`,
/// else `.tar.gz`.
fn write_tarball(
    staging: &Staging,
    tar: &Path,
    timestamp: i64,
    image_mode: u32,
    printer: &Printer,
) -> Result<()> {
    printer.progress("compressing tarball...");
    let compression = if tar.extension().is_some_and(|e| e == "xz") {
        tarball::Compressor::Xz
    } else {
        tarball::Compressor::Gzip
    };
    let files = ["kernel", "initrd", "root", "README.fixed", manifest::MANIFEST_NAME];
    let t = tarball::write_tarball(
        staging.dir(),
        &files,
        tar,
        &tarball::TarballOptions {
            compression,
            prefix: "appliance".into(),
            mtime: timestamp,
            threads: 0,
            mode: image_mode,
        },
    )?;
    printer.stage(format!("tarball: {} ({})", tar.display(), human_bytes(t.compressed_bytes)));
    Ok(())
}

/// Refuse an output directory that sits inside one of the input directories:
/// the next build would read our own output as input.
fn check_not_inside_inputs(dir: &Path, inputs: &Inputs) -> Result<()> {
    let dir_abs = absolute(dir);
    for f in &inputs.files {
        let Some(parent) = f.path.parent() else { continue };
        if parent.as_os_str().is_empty() || f.path.starts_with("<embedded>") {
            continue;
        }
        let parent_abs = absolute(parent);
        if dir_abs.starts_with(&parent_abs) {
            bail!(
                "output directory {} is inside the input directory {}: choose an output directory outside the inputs",
                dir.display(),
                parent_abs.display()
            );
        }
    }
    Ok(())
}

/// Bytes the root image will allocate: data rounded to blocks plus inode
/// tables and directory blocks, with slack for indirect blocks.
fn estimate_bytes(data: u64, entries: u64) -> u64 {
    data + data / 64 + entries * (4096 + 256) + (8 << 20)
}

fn write_file(staging: &Staging, name: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    staging
        .create_file(name, 0o644)?
        .write_all(bytes)
        .with_context(|| format!("writing {}", staging.path().join(name).display()))
}

/// Fill the README.fixed template.
pub(crate) fn render_readme(m: &Manifest, dir: &Path) -> String {
    let inputs: String = m.inputs.iter().map(|i| format!("  {} ({})\n", i.path, i.kind)).collect();
    README_TEMPLATE
        .replace("@VERSION@", &m.tool_version)
        .replace("@KERNEL_VERSION@", &m.kernel.version)
        .replace(
            "@KERNEL_HOW@",
            if m.output.kernel_image == kernel_file::KernelImage::Vmlinux.name() {
                "uncompressed (booted through its PVH entry point) from"
            } else {
                "copied from"
            },
        )
        .replace("@KERNEL_PATH@", &m.kernel.path)
        .replace("@INITRD_MODULES@", &m.output.initrd_modules.to_string())
        .replace("@ROOT_SIZE@", &human_bytes(m.options.size))
        .replace("@ROOT_UUID@", &m.output.root_uuid)
        .replace("@PACKAGE_COUNT@", &m.packages.len().to_string())
        .replace("@PACKAGE_HANDLER@", &m.package_handler)
        .replace("@INPUTS@", inputs.trim_end_matches('\n'))
        .replace("@FINGERPRINT@", &m.fingerprint)
        .replace("@DIR@", &dir.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readme_has_no_placeholders_left() {
        let mut m = crate::manifest::tests::sample();
        m.fingerprint = m.compute_fingerprint();
        let text = render_readme(&m, Path::new("/dev/shm/appliance"));
        assert!(!text.contains('@'), "{text}");
        assert!(text.contains("export LIBGUESTFS_PATH=/dev/shm/appliance"));
        assert!(text.contains("6.1.0-56-amd64"));
    }
}
