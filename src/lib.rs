//! guestfs-appliance: build and look after libguestfs fixed appliances.
//!
//! Architecture map (dependencies point downwards):
//!
//! ```text
//! main.rs, bin/make-fixed-appliance.rs   parse args, dispatch, exit codes
//! cli.rs                                 clap types only
//! commands/                              one file per subcommand: args -> library call -> print
//!   build.rs check.rs                    args -> ApplianceSpec -> build:: -> print
//!   status.rs, env.rs                    health report; LIBGUESTFS_* for shells
//!      |  (no library module imports commands/ or cli.rs)
//!      v
//! build/                                 THE pipeline as a library; mod.rs is the only wiring
//!   spec.rs                              ApplianceSpec (what) + PublishOptions (where)
//!   plan.rs                              inputs, packages, kernel resolved; fingerprint
//!   write.rs                             kernel, initrd, root, tarball into staging
//!   fresh.rs                             fresh or stale, and what changed (used by
//!                                        check, build --if-needed, cache, status)
//! appliance.rs                           inputs + packages + modules -> FileTree
//! hostdata.rs                            host metadata kept/normalized; hostfiles
//!                                        and modules tree fingerprinted
//! input/                                 supermin.d: classify, lists, base tarballs
//!   archive.rs, archive/reader.rs          stream tar members (GNU, PAX, sparse) to scratch
//! package/                               PackageDb trait, Handler descriptors, detect();
//!   dpkg/                                reads /var/lib/dpkg (status.rs parses, closure.rs resolves)
//!   rpm.rs, pacman.rs                    one rpm -qa call; /var/lib/pacman/local read directly
//! kernel.rs                              kernel + modules directory selection
//! image/files.rs                         FileTree: the shared in-memory tree
//! image/scratch.rs, image/hostfile.rs    file data kept on disk (holes kept); host files
//! image/ext2.rs                          ext2 writer (FileTree -> root image)
//! image/cpio.rs, image/initrd.rs         newc writer, initrd module selection
//! image/tarball.rs                       sparse-aware .tar.gz/.tar.xz output
//! init.rs                                the initrd's init: built in, or $GUESTFS_APPLIANCE_INIT
//! output.rs                              staging dir, lock, atomic swap, "is an appliance"
//! safefs.rs                              files made relative to a pinned dir fd (O_EXCL, O_NOFOLLOW)
//! cache/                                 libguestfs .guestfs-UID caches; mod.rs: names, errors, lock file
//!   find.rs inspect.rs prime.rs clean.rs   one job each; prime -> build/ (holds the lock to the date touch)
//! manifest.rs                            manifest.toml and the fingerprint
//! bounded.rs                             the one reader of files we parse: no FIFOs, size caps
//! digest.rs                              output digests: while writing, and sparse (root)
//! stamp.rs                               stat-level shortcut for build::fresh
//! hashcache.rs                           host files' sha256 remembered by stat signature
//! config.rs                              /etc/guestfs-appliance/config.toml
//! schedule.rs                            cron/systemd/apt templates
//! bench/                                 bench: timed libguestfs launches, fixed vs supermin
//!   launch.rs                              guestfish runs (either appliance, private cache)
//!   stats.rs stages.rs                     summaries; boot stages from a verbose console
//!   report.rs svg.rs interrupt.rs          table/JSON, plotters SVG, Ctrl-C cleanup
//! health/                                status: mod.rs = Facts, the probe table, Report
//!   probe.rs                             Probe/Severity/Finding + runner (the bottom:
//!                                        every group imports downwards from it)
//!   location.rs appliance.rs virt.rs     one probe group each, over its own facts
//!                                        (imports: virt -> appliance -> location ->
//!                                        libguestfs; each -> probe.rs, host/)
//!   libguestfs.rs                        what libguestfs uses: LIBGUESTFS_PATH, cache base
//!   report/                              one file per format: text json nagios prometheus
//! host/                                  facts about this machine, one file per source:
//!   users.rs                             users through libc/NSS (getpwuid_r), for cache
//!   mountinfo.rs sysfs.rs statfs.rs      mounts; disks under a device; fs type + usage
//!                                        (used by health/ and cache; imports none of them)
//! printer.rs                             quiet/verbose/progress on stderr
//! stdout.rs                              the only writer of data to stdout
//! process.rs                             the only place that runs external tools:
//!                                        output(); Timed run()/watch() with deadlines
//!
//! ../init/                               the appliance's PID 1: a crate of its own (std + nix)
//! ../build.rs                            builds ../init statically (nested cargo) for init.rs
//! ```
//!
//! Only the init is statically linked; the binaries link normally, so user
//! lookups go through NSS.

pub mod appliance;
pub mod bench;
pub mod bounded;
pub mod build;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod config;
pub mod digest;
pub mod hashcache;
pub mod health;
pub mod host;
pub mod hostdata;
pub mod image;
pub mod init;
pub mod input;
pub mod kernel;
pub mod manifest;
pub mod output;
pub mod package;
pub mod printer;
pub mod process;
pub mod safefs;
pub mod schedule;
pub mod stamp;
pub mod stdout;

/// Map a command's outcome to the process exit code, printing the error
/// chain on stderr on one line. (A closed stdout is not an error and never
/// gets here: [`stdout::write`] ends the output quietly.)
pub fn exit_code(result: anyhow::Result<()>, printer: &printer::Printer) -> std::process::ExitCode {
    printer.clear_progress();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            printer.error(error_line(&err));
            std::process::ExitCode::from(2)
        }
    }
}

/// The error chain on one line, outermost first, joined with ": ". A cause
/// whose text the message already contains (errors that quote their
/// source) is not repeated; newlines are folded so the error stays one line.
pub fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ")
}

/// Helpers shared by the unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;

    /// A host tool from PATH (then /usr/sbin, /sbin), or `None` with a
    /// printed reason so the test can return early. Under CI=true, where
    /// `.ci/install-deps` installs every tool, a missing one is a failure.
    pub(crate) fn tool(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join(name))
            .find(|p| p.is_file());
        if found.is_none() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{name} is required under CI");
            eprintln!("skipping: {name} not installed");
        }
        found
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_line_skips_quoted_causes_and_folds_lines() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = anyhow::Error::new(io).context("reading /x: gone").context("building\nDIR");
        assert_eq!(super::error_line(&err), "building; DIR: reading /x: gone");
    }
}
