//! guestfs-appliance: build and look after libguestfs fixed appliances.
//!
//! Architecture map. Every arrow points down the page: a file imports only
//! files listed below it, or beside it where an arrow says so (`a -> b`:
//! a imports b). `tests/integration/layout.rs` checks that no two source
//! files import each other, directly or around a loop, and that no
//! library file reaches `cli.rs`, `commands/` or clap.
//!
//! ```text
//! main.rs, bin/make-fixed-appliance.rs   parse args (cli.rs), dispatch to commands/, exit codes
//! cli.rs                                 clap types only; ColorArg, KindArg map to library enums
//! commands/                              one file per subcommand: args -> library call -> print
//!   build.rs check.rs make_fixed.rs      args -> ApplianceSpec -> build:: -> print
//!   status.rs env.rs cache.rs bench.rs   health::, cache::, bench:: reports
//!   hook.rs watch.rs                     our own build as a child: process::Spawned
//!   schedule.rs generate.rs              schedule:: files; man pages and completions
//!      |  (no library file imports cli.rs or commands/, or names clap)
//!      v
//! bench/                                 bench: timed libguestfs launches, fixed vs supermin
//!                                        (-> health/libguestfs.rs: what libguestfs would use)
//!   mod.rs -> launch.rs stats.rs stages.rs report.rs; svg.rs -> report.rs
//! cache/                                 libguestfs .guestfs-UID caches
//!   mod.rs                               names, errors, the lock file (its files import it)
//!   find.rs inspect.rs prime.rs clean.rs   one job each; prime -> build/ (holds the lock to the
//!                                        date touch); inspect -> build/fresh.rs
//! health/                                status: mod.rs = Facts, the probe table, Report
//!   virt.rs -> appliance.rs -> location.rs -> libguestfs.rs
//!                                        one probe group each, over its own facts; all -> probe.rs
//!   probe.rs                             Probe/Severity/Finding + runner (the bottom of health/)
//!   report/ -> mod.rs                    one file per format: text json nagios prometheus
//!      |
//!      v
//! build/                                 THE pipeline as a library
//!   mod.rs                               the only wiring: spec -> plan -> write -> publish
//!   spec.rs                              ApplianceSpec (what) + PublishOptions (where)
//!   plan.rs -> spec.rs                   inputs, packages, kernel resolved; fingerprint
//!   write.rs -> plan.rs                  kernel, initrd, root, tarball into staging (compose, image/)
//!   fresh.rs -> plan.rs                  fresh or stale, and what changed (check, build --if-needed,
//!                                        cache, status)
//!      |
//!      v
//! compose.rs                             inputs + packages + modules -> FileTree
//! hostdata.rs                            host metadata kept/normalized; hostfiles and modules
//!                                        tree fingerprinted
//! hashcache.rs -> stamp.rs               host files' sha256 remembered by stat signature
//! stamp.rs -> output.rs -> manifest.rs   stat-level shortcut; staging dir, lock, atomic swap,
//!                                        "is an appliance"; manifest.toml + fingerprint
//! input/                                 supermin.d: classify, lists, base tarballs
//!   mod.rs -> archive.rs -> classify.rs, source.rs; all -> error.rs (InputError, the leaf)
//!   archive/reader.rs                    stream tar members (GNU, PAX, sparse) to scratch
//!   exclude.rs                           ExcludePattern (excludefiles lines)
//! package/                               mod.rs: Handler registry, detect(), labels
//!   dpkg/ rpm.rs pacman.rs               one handler each (dpkg/: status.rs parses,
//!                                        closure.rs resolves; rpm.rs -> rpm/sqlite.rs (reads
//!                                        rpmdb.sqlite, -> header.rs) or rpm/query.rs (rpm -qa);
//!                                        all -> rpm/installed.rs, the records they share)
//!   contract.rs                          PackageDb trait + its types (the leaf every handler imports)
//! kernel.rs                              kernel + modules directory selection
//! schedule.rs                            cron/systemd/apt/kernel/pacman templates, installed
//! config.rs                              /etc/guestfs-appliance/config.toml
//! init.rs -> image/initrd.rs             the initrd's init: built in, or $GUESTFS_APPLIANCE_INIT
//! image/                                 writers; take a plain FileTree, know no packages
//!   ext2.rs                              ext2 writer (FileTree -> root image)
//!     copy.rs disk.rs -> layout.rs       file data; on-disk encoders; geometry + allocation
//!   cpio.rs, initrd.rs                   newc writer, initrd module selection
//!   tarball.rs, tarball/                 sparse-aware .tar.gz/.tar.xz output
//!   files.rs -> scratch.rs               FileTree (the shared in-memory tree); data on disk
//!   hostfile.rs                          host files read for the image (holes kept)
//!      |
//!      v  shared mechanics, each once
//! safefs.rs                              files made relative to a pinned dir fd (O_EXCL,
//!                                        O_NOFOLLOW); create_replacement/write_atomic: the one
//!                                        atomic write (stamp, tarball, env, schedule, bench)
//! paths.rs                               split (parent + name), under_root (a path in a tree)
//! fnmatch.rs                             the one glob matcher (excludefiles, hostfiles, kernels,
//!                                        initrd module lists, private files)
//! cores.rs                               the one split of independent work over all cores
//! digest.rs                              sha256, hex; output digests while writing and sparse
//!                                        (XXH3 over 4 KiB blocks for the root image)
//! process.rs                             the only place that runs external tools: output();
//!                                        Timed run()/watch() with deadlines; Spawned children
//! host/                                  facts about this machine, one file per source:
//!   users.rs                             users through libc/NSS (getpwuid_r), for cache
//!   mountinfo.rs sysfs.rs statfs.rs      mounts; disks under a device; fs type + usage
//! bounded.rs                             the one reader of files we parse: no FIFOs, size caps
//! printer.rs                             quiet/verbose/progress on stderr
//! stdout.rs                              the only writer of data to stdout
//!
//! ../init/                               the appliance's PID 1: a crate of its own (std + nix)
//! ../build.rs                            builds ../init statically (nested cargo) for init.rs
//! ```
//!
//! Only the init is statically linked; the binaries link normally, so user
//! lookups go through NSS.

#![warn(unreachable_pub)]

pub mod bench;
pub(crate) mod bounded;
pub mod build;
pub mod cache;
pub mod cli;
pub mod commands;
pub(crate) mod compose;
pub mod config;
pub(crate) mod cores;
pub mod digest;
pub(crate) mod fnmatch;
pub mod hashcache;
pub(crate) mod health;
pub mod host;
pub(crate) mod hostdata;
pub mod image;
pub mod init;
pub mod input;
pub(crate) mod kernel;
pub mod manifest;
pub mod output;
pub mod package;
pub(crate) mod paths;
pub mod printer;
pub mod process;
pub mod safefs;
pub(crate) mod schedule;
pub mod stamp;
pub mod stdout;

/// Cap glibc's malloc at two arenas; call first thing in `main`, before
/// any thread starts. Otherwise each thread that allocates gets an arena
/// of its own, and each arena reserves 64 MiB of address space. A build
/// runs up to eight threads at once (kernel, initrd, base archives, the
/// copy, the metadata beside it), so under an address-space limit
/// (`ulimit -v`; the tests build in 256 MiB) those reservations left no
/// room for the next thread's stack and spawning it failed. Our threads
/// allocate little once running (buffers up front), so two arenas cost
/// nothing measurable.
#[allow(unsafe_code)]
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes two integers and only changes a malloc
    // tunable; no other thread exists yet to be allocating.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

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
        let found = crate::process::find_program(name);
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
