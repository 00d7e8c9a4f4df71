//! Command-line types (clap derive) for both binaries. No logic lives here.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::printer::ColorChoice;
use crate::schedule;

/// Build and look after libguestfs fixed appliances.
#[derive(Debug, Parser)]
#[command(name = "guestfs-appliance", version, about, max_term_width = 80)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Configuration file (default: $GUESTFS_APPLIANCE_CONFIG, else
    /// /etc/guestfs-appliance/config.toml if it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output options shared by every command of both binaries.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Show stages and timings (-v), or details too (-vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Show only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// When to colour messages.
    #[arg(long, value_enum, default_value_t, global = true, value_name = "WHEN")]
    pub color: ColorArg,
}

impl GlobalArgs {
    /// Verbosity level for the printer: -1 quiet, 0 normal, 1.. verbose.
    pub fn verbosity(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            self.verbose.min(3) as i8
        }
    }

    /// The printer's colour choice.
    pub fn color_choice(&self) -> ColorChoice {
        match self.color {
            ColorArg::Auto => ColorChoice::Auto,
            ColorArg::Always => ColorChoice::Always,
            ColorArg::Never => ColorChoice::Never,
        }
    }
}

/// `--color`: when to use colour on stderr ([`ColorChoice`], which the
/// library takes, has no clap in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorArg {
    /// Colour when stderr is a terminal.
    #[default]
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a fixed appliance (kernel, initrd, root, README.fixed) into DIR.
    Build(BuildArgs),
    /// Exit 0 if DIR matches the host, 1 if stale (and say what changed),
    /// 2 if it cannot tell.
    Check(CheckArgs),
    /// List, prime or clean libguestfs's per-user appliance caches.
    Cache(CacheArgs),
    /// Show or install cron, systemd, apt, kernel and pacman files that keep
    /// the appliance fresh (`build --if-needed`).
    Schedule(ScheduleArgs),
    /// Report what makes libguestfs slow or fail here: storage, appliance,
    /// KVM, qemu. Exit 0 healthy, 1 problems found, 2 error.
    Status(StatusArgs),
    /// Print the environment libguestfs should run with (LIBGUESTFS_PATH,
    /// LIBGUESTFS_CACHEDIR), or install it system-wide.
    Env(EnvArgs),
    /// Watch the package database, kernels and the appliance's inputs;
    /// run `build --if-needed` after each burst of changes.
    Watch(WatchArgs),
    /// Write man pages, shell completions or packaged files (for
    /// packaging/build).
    #[command(hide = true)]
    Generate(GenerateArgs),
    /// Time real libguestfs launches with the fixed appliance against
    /// libguestfs's own supermin appliance (guestfs-performance baselines).
    ///
    /// Runs in the environment it is given: where KVM is unusable, run it
    /// with LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg.
    /// Under TCG each launch takes 10-20 s, so a run takes minutes.
    Bench(BenchArgs),
}

/// Options of `watch`.
#[derive(Debug, Args, Clone)]
pub struct WatchArgs {
    /// Appliance directory. Default: appliance.dir from the config file.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Seconds without further changes before checking: a package manager
    /// run of many packages is one check.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub debounce: f64,
}

/// Options of the hidden `generate` command.
#[derive(Debug, Args, Clone)]
pub struct GenerateArgs {
    /// What to write.
    #[command(subcommand)]
    pub what: GenerateWhat,
}

/// What `generate` writes.
#[derive(Debug, Subcommand, Clone)]
pub enum GenerateWhat {
    /// Man pages (section 1) for both tools and every subcommand, into DIR.
    Man {
        /// Output directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// bash, zsh and fish completions for both tools, into DIR.
    Completions {
        /// Output directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// The packaged config.toml (every key commented at its default) on
    /// stdout.
    Config {
        /// The appliance directory the package owns (set, not commented).
        #[arg(long, value_name = "DIR")]
        appliance_dir: Option<PathBuf>,
    },
    /// The packaged /etc/profile.d file for appliance DIR on stdout.
    Profile {
        /// The appliance directory.
        #[arg(long, value_name = "DIR")]
        appliance_dir: PathBuf,
    },
}

/// Options of `bench`.
#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// The fixed appliance directory. Default: as for `status`, the one an
    /// exported LIBGUESTFS_PATH leads to, else appliance.dir from the
    /// config file.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Timed launches per appliance (and per --inspect).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub runs: u32,
    /// Launches per appliance run first and discarded (the first one
    /// builds libguestfs's supermin appliance into a private cache).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub warmup: u32,
    /// Print the report as JSON (schema: docs/bench-schema.json).
    #[arg(long)]
    pub json: bool,
    /// Also draw the launch times (and parallel scaling, stages) as SVG.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Also time the inspection baseline `guestfish --ro -a IMAGE -i exit`.
    #[arg(long, value_name = "IMAGE")]
    pub inspect: Option<PathBuf>,
    /// Also time batches of simultaneous launches of the fixed appliance,
    /// e.g. 1,2,4 (each launch is a qemu with 1280 MiB).
    #[arg(long, value_name = "LIST", value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=32))]
    pub parallel: Vec<u32>,
    /// Also split one verbose launch per appliance into boot stages.
    #[arg(long)]
    pub stages: bool,
    /// With --stages: save each verbose launch's timed output in DIR
    /// (fixed-console.log, supermin-console.log).
    #[arg(long, value_name = "DIR", requires = "stages")]
    pub stages_log: Option<PathBuf>,
    /// Stop and fail a launch that takes longer than this.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}

/// Output formats of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum StatusFormat {
    /// A report for people.
    #[default]
    Human,
    /// JSON (schema: docs/status-schema.json).
    Json,
    /// One Nagios plugin line with perfdata; exit 0/1/2/3.
    Nagios,
    /// Prometheus text format (node_exporter textfile collector).
    Prometheus,
}

/// Options of `status`.
#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// The fixed appliance directory. Default: the one an exported
    /// LIBGUESTFS_PATH leads to, else appliance.dir from the config file
    /// (/usr/local/lib/guestfs/appliance).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Measure: write test per file system (health.probe_bytes), and test
    /// boots under KVM and TCG.
    #[arg(long)]
    pub probe: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t, value_name = "FORMAT")]
    pub format: StatusFormat,
    /// Same as --format json.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Skip a probe by name, or a group (location, appliance, virt); see
    /// --list-probes.
    #[arg(long, value_name = "NAME")]
    pub skip: Vec<String>,
    /// Finish within this many seconds, test boots included: what did not
    /// finish is reported as not checked. Default with --format nagios: 50
    /// (Nagios stops a plugin after 60).
    #[arg(short = 't', long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
    /// List the probes and exit.
    #[arg(long)]
    pub list_probes: bool,
}

/// Shells `env` can print for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// POSIX sh, bash, zsh, dash.
    Sh,
    /// fish.
    Fish,
    /// csh, tcsh.
    Csh,
}

/// Options of `env`.
#[derive(Debug, Args, Clone)]
pub struct EnvArgs {
    /// The fixed appliance directory. Default: the one an exported
    /// LIBGUESTFS_PATH leads to, else appliance.dir from the config file.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Shell syntax. Default: from $SHELL, else sh.
    #[arg(long, value_enum, value_name = "SHELL")]
    pub shell: Option<Shell>,
    /// Write /etc/profile.d/guestfs-appliance.sh and
    /// /etc/environment.d/50-guestfs-appliance.conf instead of printing.
    #[arg(long)]
    pub install: bool,
    /// With --install: write under this root instead of /.
    #[arg(long, value_name = "DIR", default_value = "/", requires = "install")]
    pub root: PathBuf,
}

/// `cache`: libguestfs's per-user caches (`<base>/.guestfs-UID`).
#[derive(Debug, Args, Clone)]
pub struct CacheArgs {
    /// What to do with the caches.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// The `cache` subcommands.
#[derive(Debug, Subcommand, Clone)]
pub enum CacheCommand {
    /// Show every cache: owner, size, age, freshness, lock.
    List(CacheListArgs),
    /// Build the appliance into a user's cache so libguestfs reuses it.
    Prime(CachePrimeArgs),
    /// Remove caches of users that are gone, and old or stale ones.
    ///
    /// Caches of uids the system's user database (NSS) does not know are
    /// always removed; --older-than and --stale add more. A cache whose lock
    /// is held (a libguestfs launch is building) is skipped; a symlink, or a
    /// directory whose owner is not the uid in its name, is never touched.
    Clean(CacheCleanArgs),
}

/// Options of `cache list`.
#[derive(Debug, Args, Clone)]
pub struct CacheListArgs {
    /// Print JSON (with a "version" field) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also look in these directories (or at these .guestfs-UID caches),
    /// besides $LIBGUESTFS_CACHEDIR, $TMPDIR, /var/tmp and cache.extra_dirs.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// Options of `cache prime`.
#[derive(Debug, Args, Clone)]
pub struct CachePrimeArgs {
    /// Whose cache (name or uid). Default: the current user.
    #[arg(long, value_name = "NAME|UID")]
    pub user: Option<String>,
    /// Base directory holding .guestfs-UID. Default: libguestfs's rule
    /// ($LIBGUESTFS_CACHEDIR, else $TMPDIR, else /var/tmp).
    #[arg(long, value_name = "DIR")]
    pub cachedir: Option<PathBuf>,
    /// Rebuild even if the cache already holds a fresh appliance.
    #[arg(long)]
    pub force: bool,
}

/// Options of `cache clean`.
#[derive(Debug, Args, Clone)]
pub struct CacheCleanArgs {
    /// Also remove caches unused for longer than this (e.g. 30d, 12h, 2w).
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    /// Also remove stale appliances (appliance.d only; the cache stays).
    #[arg(long)]
    pub stale: bool,
    /// Only caches of this user (name or uid; repeatable).
    #[arg(long, value_name = "NAME|UID")]
    pub user: Vec<String>,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also look in these directories (or at these .guestfs-UID caches).
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// What the appliance is built from: shared by `build` and `check`, so that
/// `check` asks about the same appliance `build` would make.
///
/// Every field is "not given" by default: a new build fills the gaps from
/// the config file and the defaults, while `check`, `build --if-needed`,
/// `cache list` and `status` fill them from the existing appliance's
/// manifest (see `build::ApplianceSpec::for_appliance`).
#[derive(Debug, Args, Clone, Default)]
pub struct SourceArgs {
    /// A supermin.d input directory or file (repeatable). Default:
    /// libguestfs's installed supermin.d, else the built-in minimal appliance.
    #[arg(long = "input", value_name = "PATH")]
    pub inputs: Vec<PathBuf>,
    /// Use the built-in minimal appliance (bash, coreutils, util-linux).
    #[arg(long, conflicts_with = "inputs")]
    pub minimal: bool,
    /// Size of the sparse root image (e.g. 4G, 1.5G, 800M; supermin syntax).
    /// Default: appliance.size from the config file (4G).
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// Fail when a package named in the input is not installed.
    #[arg(long)]
    pub strict: bool,
    /// Host root holding the package database, files and kernels
    /// (default: /).
    #[arg(long = "root", alias = "dpkg-root", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// CPU the appliance is for (kernel selection), as supermin's --host-cpu
    /// (default: this machine's).
    #[arg(long, value_name = "CPU")]
    pub host_cpu: Option<String>,
    /// What the appliance's kernel file is: the uncompressed kernel, which
    /// qemu boots without the guest decompressing it (x86_64 kernels with
    /// a PVH entry point; several seconds faster per launch under TCG),
    /// or a copy of the host's file as supermin makes it. Default:
    /// appliance.kernel_format from the config file (auto: uncompressed
    /// where possible).
    #[arg(long, value_name = "FORMAT")]
    pub kernel_format: Option<KernelFormatArg>,
}

/// `--kernel-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelFormatArg {
    /// Uncompressed where possible, else a copy.
    Auto,
    /// The uncompressed ELF (vmlinux), booted through its PVH entry point.
    Uncompressed,
    /// The host's kernel file as it is (supermin's way).
    Copy,
}

/// Options of `build`.
#[derive(Debug, Args, Clone)]
pub struct BuildArgs {
    /// Output directory, e.g. /dev/shm/appliance (replaced atomically).
    /// Default: appliance.dir from the config file
    /// (/usr/local/lib/guestfs/appliance).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// What to build from.
    #[command(flatten)]
    pub source: SourceArgs,
    /// Also (or, without DIR, only) write the appliance as a .tar.gz, or a
    /// .tar.xz if FILE ends in .xz.
    #[arg(long, value_name = "FILE")]
    pub tar: Option<PathBuf>,
    /// Build only if DIR is missing or stale (for cron and package hooks);
    /// source options not given are taken from DIR's manifest.
    #[arg(long, conflicts_with = "tar")]
    pub if_needed: bool,
    /// For package-manager and kernel hooks: start guestfs-appliance.service
    /// without waiting where systemd runs, else build here for at most
    /// --hook-timeout seconds. Failures are reported; the exit code is 0.
    #[arg(long, requires = "if_needed")]
    pub hook: bool,
    /// With --hook: end a build run here after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 900, requires = "hook")]
    pub hook_timeout: u64,
    /// Give up waiting for another build of DIR after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub lock_timeout: u64,
}

/// Options of `check`.
#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// Appliance directory. Default: appliance.dir from the config file.
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// What the appliance should be built from; what is not given is taken
    /// from DIR's manifest (what DIR was built from).
    #[command(flatten)]
    pub source: SourceArgs,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also re-hash kernel, initrd and root against the digests the
    /// manifest records (reads their data; without it, check only stats
    /// them).
    #[arg(long)]
    pub verify: bool,
}

/// `schedule --kind`: one kind of scheduling ([`schedule::Kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum KindArg {
    /// /etc/cron.d entry (hourly).
    Cron,
    /// systemd service + timer (hourly, persistent).
    Systemd,
    /// apt hook after every dpkg run.
    Apt,
    /// Kernel hooks: /etc/kernel/postinst.d, postrm.d and install.d.
    Kernel,
    /// pacman (ALPM) hook after every transaction.
    Pacman,
}

impl From<KindArg> for schedule::Kind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::Cron => schedule::Kind::Cron,
            KindArg::Systemd => schedule::Kind::Systemd,
            KindArg::Apt => schedule::Kind::Apt,
            KindArg::Kernel => schedule::Kind::Kernel,
            KindArg::Pacman => schedule::Kind::Pacman,
        }
    }
}

/// Options of `schedule`.
#[derive(Debug, Args, Clone)]
pub struct ScheduleArgs {
    /// Which files (repeatable). Default: systemd units (or cron without
    /// systemd), and the apt, kernel and pacman hooks where those exist.
    #[arg(long = "kind", value_enum, value_name = "KIND")]
    pub kinds: Vec<KindArg>,
    /// Write the files instead of printing them.
    #[arg(long)]
    pub install: bool,
    /// Install under this directory instead of / (for images and tests).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub dest_root: PathBuf,
    /// Path of guestfs-appliance to run (default: this executable).
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
}

/// Drop-in replacement for libguestfs-make-fixed-appliance: build the
/// libguestfs appliance into OUTPUTDIR, or as appliance-VERSION.tar.xz
/// in the current directory with --xz.
#[derive(Debug, Parser)]
#[command(
    name = "make-fixed-appliance",
    version,
    max_term_width = 80,
    override_usage = "make-fixed-appliance [--tar FILE] OUTPUTDIR\n       make-fixed-appliance --tar FILE\n       make-fixed-appliance --xz"
)]
pub struct MakeFixedCli {
    /// Output options. No `--config`: like libguestfs's script, this builds
    /// libguestfs's appliance with libguestfs's defaults, whatever the
    /// configuration file says (see `commands::make_fixed`).
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Write appliance-VERSION.tar.xz in the current directory.
    #[arg(long, conflicts_with_all = ["tar", "outputdir"])]
    pub xz: bool,
    /// Write the appliance as a .tar.gz (.tar.xz if FILE ends in .xz) to
    /// FILE, besides OUTPUTDIR if one is given.
    #[arg(long, value_name = "FILE")]
    pub tar: Option<PathBuf>,
    /// Where to put kernel, initrd, root and README.fixed.
    #[arg(value_name = "OUTPUTDIR", required_unless_present_any = ["xz", "tar"])]
    pub outputdir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
        MakeFixedCli::command().debug_assert();
    }

    #[test]
    fn bench_parallel_is_a_comma_list_of_small_counts() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["g", "bench"], args].concat());
        let cli = parse(&["--parallel", "1,2,4", "dir"]).unwrap();
        let Command::Bench(b) = cli.command else { panic!("not bench") };
        assert_eq!(b.parallel, [1, 2, 4]);
        assert_eq!((b.runs, b.warmup, b.timeout), (5, 1, 600));
        assert!(parse(&["--parallel", "0"]).is_err());
        assert!(parse(&["--parallel", "64"]).is_err());
        assert!(parse(&["--runs", "0"]).is_err());
        assert!(parse(&["--stages-log", "d"]).is_err(), "--stages-log needs --stages");
        assert!(parse(&["--warmup", "0", "--stages", "--stages-log", "d"]).is_ok());
    }

    #[test]
    fn make_fixed_usage_matches_libguestfs() {
        assert!(MakeFixedCli::try_parse_from(["m", "--xz"]).is_ok());
        assert!(MakeFixedCli::try_parse_from(["m", "--xz", "dir"]).is_err());
        assert!(MakeFixedCli::try_parse_from(["m"]).is_err());
        assert!(MakeFixedCli::try_parse_from(["m", "dir"]).is_ok());
        assert!(MakeFixedCli::try_parse_from(["m", "--config", "f", "dir"]).is_err());
        assert!(Cli::try_parse_from(["g", "build", "--config", "f", "dir"]).is_ok_and(|c| c.config.is_some()));
    }
}
