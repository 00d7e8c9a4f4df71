//! `env`: the environment libguestfs should run with on this machine, in
//! the syntax of a shell, with a comment saying why each variable is set;
//! or, with `--install`, the same written to /etc/profile.d and
//! /etc/environment.d (rendered from templates/, written atomically).
//!
//! The appliance looked at is `--dir`, else the one an exported
//! `LIBGUESTFS_PATH` leads to, else the config's `appliance.dir`
//! (`health::libguestfs::examined_dir`). `LIBGUESTFS_PATH` is set when that
//! appliance is bootable (an exported value that leads there is kept);
//! `LIBGUESTFS_CACHEDIR` only when libguestfs will build its own appliance
//! in its cache (no fixed appliance in use) and the cache it uses (its own
//! order: `$LIBGUESTFS_CACHEDIR`, `$TMPDIR`, `/var/tmp`) is slow or too
//! small while a fast location with room exists. The assessment is
//! `crate::health`'s; this file only decides and renders.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::{EnvArgs, Shell};
use crate::config::Config;
use crate::health::appliance::{self, ApplianceFacts};
use crate::health::libguestfs::{self, LibguestfsEnv, Source};
use crate::health::location::{self, Location, LocationSpec, Role};
use crate::health::HostRoots;
use crate::printer::{human_bytes, Printer};

const PROFILE_TEMPLATE: &str = include_str!("../../templates/profile.d.sh");
const ENVIRONMENT_D_TEMPLATE: &str = include_str!("../../templates/environment.d.conf");

/// Where `--install` writes, relative to `--root`.
pub(crate) const PROFILE_PATH: &str = "etc/profile.d/guestfs-appliance.sh";
/// Where `--install` writes the systemd environment.d file, relative to `--root`.
pub(crate) const ENVIRONMENT_D_PATH: &str = "etc/environment.d/50-guestfs-appliance.conf";

/// One variable to set, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvVar {
    /// `LIBGUESTFS_PATH` or `LIBGUESTFS_CACHEDIR`.
    pub(crate) name: &'static str,
    /// Its value (an absolute path).
    pub(crate) value: String,
    /// One line: why.
    pub(crate) why: String,
}

/// What `env` decided: variables to set, and comments on what was not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EnvPlan {
    /// Variables to set.
    pub(crate) vars: Vec<EnvVar>,
    /// Comments on variables left alone.
    pub(crate) notes: Vec<String>,
    /// The appliance directory (for the profile.d guard).
    pub(crate) appliance_dir: String,
}

/// Decide the variables from the appliance examined (`source`: why that
/// one, see [`libguestfs::examined_dir`]), the environment libguestfs runs
/// with now (`lg`) and the assessed locations (`margin`:
/// health.space_margin).
///
/// `LIBGUESTFS_PATH`: set to the appliance when it is bootable (an exported
/// value that leads to it is kept as it is); otherwise explained. The cache
/// (`LIBGUESTFS_CACHEDIR`) only matters when libguestfs will build its
/// appliance there with supermin, i.e. when no fixed appliance is used:
/// then it is moved when the cache in use is slow or too small.
pub(crate) fn decide(
    app: &ApplianceFacts,
    source: Source,
    lg: &LibguestfsEnv,
    locations: &[Location],
    margin: f64,
) -> EnvPlan {
    let mut plan = EnvPlan { appliance_dir: app.dir.display().to_string(), ..Default::default() };
    let dir = app.dir.display();
    let fixed_in_use = if app.bootable {
        let kernel =
            app.manifest_kernel.as_deref().or(app.image_kernel.as_deref()).unwrap_or("unknown kernel");
        let why =
            format!("boot the fixed appliance ({kernel}) directly instead of building one with supermin");
        let (value, why) = match (&lg.path_var, source) {
            // Already what libguestfs uses: keep the whole list as it is.
            (Some(var), Source::LibguestfsPath) => {
                (var.clone(), format!("{why} (kept from your environment: it leads to {dir})"))
            }
            (Some(var), _) if var != &plan.appliance_dir => (
                plan.appliance_dir.clone(),
                format!("{why} (replaces LIBGUESTFS_PATH={var}{})", found_phrase(lg)),
            ),
            _ => (plan.appliance_dir.clone(), why),
        };
        plan.vars.push(EnvVar { name: "LIBGUESTFS_PATH", value, why });
        true
    } else {
        plan.notes.push(match (&lg.path_var, source) {
            (Some(var), Source::LibguestfsPath) => format!(
                "LIBGUESTFS_PATH={var} (from your environment) leads to no bootable appliance: \
                 libguestfs launches fail; build one: guestfs-appliance build {dir}, or unset LIBGUESTFS_PATH"
            ),
            (Some(var), _) => format!(
                "LIBGUESTFS_PATH left as it is ({var}{}): no bootable appliance at {dir} \
                 (build one: guestfs-appliance build {dir})",
                found_phrase(lg)
            ),
            (None, _) => format!(
                "LIBGUESTFS_PATH not set: no bootable appliance at {dir} (build one: guestfs-appliance build {dir})"
            ),
        });
        // The exported path may still lead libguestfs to a fixed appliance.
        source != Source::LibguestfsPath && lg.uses_fixed_appliance()
    };
    for e in &lg.cachedir_errors {
        plan.notes.push(e.clone());
    }
    let Some(active) = locations.iter().find(|l| l.active_cache) else {
        return plan;
    };
    let cache = format!("{} ({})", active.path.display(), lg.cachedir_source.phrase());
    if fixed_in_use {
        plan.notes.push(format!(
            "LIBGUESTFS_CACHEDIR not changed: libguestfs boots the fixed appliance in place and keeps only \
             small qemu probe files in its cache {cache}"
        ));
        return plan;
    }
    let slow = active.class.is_slow();
    let small = !active.has_room(margin);
    if !slow && !small {
        plan.notes.push(format!(
            "LIBGUESTFS_CACHEDIR not changed: the cache in use {cache} is {} with {} free",
            if active.class == location::SpeedClass::Unknown {
                "of unknown speed (not known to be slow)"
            } else {
                active.class.name()
            },
            human_bytes(active.free_bytes)
        ));
        return plan;
    }
    let why_bad = match (slow, small) {
        (true, true) => {
            format!("is {} and has only {} free", active.class.name(), human_bytes(active.free_bytes))
        }
        (true, false) => format!("is {}", active.class.name()),
        _ => format!("has only {} free", human_bytes(active.free_bytes)),
    };
    // Fast candidates with room; memory first (fastest), then SSDs.
    let mut candidates: Vec<&Location> = locations
        .iter()
        .filter(|l| !l.active_cache && l.exists && l.roles.iter().any(|r| *r != Role::Appliance))
        .filter(|l| l.class.is_fast() && l.has_room(margin))
        .collect();
    candidates.sort_by_key(|l| l.class != location::SpeedClass::Memory);
    match candidates.first() {
        Some(best) => plan.vars.push(EnvVar {
            name: "LIBGUESTFS_CACHEDIR",
            value: best.path.display().to_string(),
            why: format!(
                "the cache in use {cache} {why_bad}; {} is {} with {} free",
                best.path.display(),
                best.class.name(),
                human_bytes(best.free_bytes)
            ),
        }),
        None => plan.notes.push(format!(
            "LIBGUESTFS_CACHEDIR not set: the cache in use {cache} {why_bad}, and no fast location with room was found"
        )),
    }
    plan
}

/// `, where libguestfs finds a supermin appliance (...)` for notes about an
/// exported `LIBGUESTFS_PATH`.
fn found_phrase(lg: &LibguestfsEnv) -> String {
    match &lg.appliance {
        Some(a) => format!(", where libguestfs finds {} in {}", a.kind.describe(), a.dir.display()),
        None => ", where libguestfs finds no appliance".into(),
    }
}

/// Quote `s` as one word for `shell`.
pub(crate) fn quote(shell: Shell, s: &str) -> String {
    match shell {
        Shell::Sh | Shell::Csh => format!("'{}'", s.replace('\'', "'\\''")),
        Shell::Fish => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
    }
}

/// Render the plan for `eval` in `shell`.
pub(crate) fn render(plan: &EnvPlan, shell: Shell) -> String {
    let mut out = String::new();
    for v in &plan.vars {
        out.push_str(&format!("# {}: {}\n", v.name, v.why));
        let value = quote(shell, &v.value);
        out.push_str(&match shell {
            Shell::Sh => format!("export {}={value}\n", v.name),
            Shell::Fish => format!("set -gx {} {value}\n", v.name),
            Shell::Csh => format!("setenv {} {value};\n", v.name),
        });
    }
    for n in &plan.notes {
        out.push_str(&format!("# {n}\n"));
    }
    out
}

/// The profile.d snippet: LIBGUESTFS_PATH guarded by the appliance's files
/// existing at login, LIBGUESTFS_CACHEDIR only when the user has not set one.
pub(crate) fn render_profile(plan: &EnvPlan) -> String {
    let mut body = String::new();
    let dir = &plan.appliance_dir;
    let q = |s: &str| quote(Shell::Sh, s);
    let why = plan
        .vars
        .iter()
        .find(|v| v.name == "LIBGUESTFS_PATH")
        .map_or_else(|| "boot the fixed appliance directly, once it is built".to_string(), |v| v.why.clone());
    body.push_str(&format!("# LIBGUESTFS_PATH: {why}\n"));
    body.push_str(&format!(
        "if [ -r {k} ] && [ -r {i} ] && [ -r {r} ]; then\n    export LIBGUESTFS_PATH={d}\nfi\n",
        k = q(&format!("{dir}/kernel")),
        i = q(&format!("{dir}/initrd")),
        r = q(&format!("{dir}/root")),
        d = q(dir)
    ));
    for v in plan.vars.iter().filter(|v| v.name != "LIBGUESTFS_PATH") {
        body.push_str(&format!(
            "# {}: {}\nif [ -z \"${{{n}-}}\" ]; then\n    export {n}={}\nfi\n",
            v.name,
            v.why,
            q(&v.value),
            n = v.name
        ));
    }
    for n in plan.notes.iter().filter(|n| !n.starts_with("LIBGUESTFS_PATH")) {
        body.push_str(&format!("# {n}\n"));
    }
    PROFILE_TEMPLATE.replace("@VERSION@", env!("CARGO_PKG_VERSION")).replace("@BODY@", body.trim_end())
}

/// The environment.d file: plain `KEY=VALUE` lines.
///
/// Errors: a value environment.d cannot hold unquoted (whitespace, quotes,
/// `$`, `\`).
pub(crate) fn render_environment_d(plan: &EnvPlan) -> Result<String> {
    let mut body = String::new();
    for v in &plan.vars {
        if v.value.chars().any(|c| c.is_whitespace() || "'\"$\\`".contains(c)) {
            bail!(
                "{}={}: environment.d files cannot hold this path; choose a directory without spaces, quotes, $ or \\",
                v.name,
                v.value
            );
        }
        body.push_str(&format!("# {}: {}\n{}={}\n", v.name, v.why, v.name, v.value));
    }
    for n in &plan.notes {
        body.push_str(&format!("# {n}\n"));
    }
    Ok(ENVIRONMENT_D_TEMPLATE
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"))
        .replace("@BODY@", body.trim_end()))
}

/// The shell named by `$SHELL`'s basename, else sh.
pub(crate) fn shell_from_env() -> Shell {
    let shell = std::env::var_os("SHELL").map(PathBuf::from);
    match shell.as_deref().and_then(Path::file_name).and_then(|n| n.to_str()) {
        Some("fish") => Shell::Fish,
        Some("csh") | Some("tcsh") => Shell::Csh,
        _ => Shell::Sh,
    }
}

/// Write `text` to `path` atomically, mode 0644, creating the parent
/// directories ([`crate::safefs::write_path_atomic`]: exclusive temp
/// file with a random name, fsync, rename, fsync the directory).
pub(crate) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let (parent, _) = crate::paths::split(path).context("install path has no file name")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    Ok(crate::safefs::write_path_atomic(path, text.as_bytes(), 0o644)?)
}

/// Run `env`.
pub fn run(args: &EnvArgs, config: &Config, printer: &Printer) -> Result<()> {
    let lg = LibguestfsEnv::from_env();
    let (dir, source) = libguestfs::examined_dir(args.dir.as_deref(), &lg, config);
    printer.stage(format!("env: appliance directory {} ({})", dir.display(), source.phrase()));
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir().context("finding the current directory")?.join(dir)
    };
    let app = appliance::gather(&dir, config, false);
    // The cache as it would be used without a fixed appliance: whether it
    // matters is decide()'s call.
    let mut spec = LocationSpec::new(&dir, &lg, app.need_bytes);
    spec.cache_need_bytes = app.need_bytes;
    let locations = location::assess(&spec, &HostRoots::default());
    let plan = decide(&app, source, &lg, &locations, config.health.space_margin);
    for v in &plan.vars {
        printer.stage(format!("env: {}={} ({})", v.name, v.value, v.why));
    }
    if args.install {
        let profile = args.root.join(PROFILE_PATH);
        let envd = args.root.join(ENVIRONMENT_D_PATH);
        let envd_text = render_environment_d(&plan)?;
        write_atomic(&profile, &render_profile(&plan))?;
        write_atomic(&envd, &envd_text)?;
        printer.info(format!("wrote {} and {} (new logins pick them up)", profile.display(), envd.display()));
        return Ok(());
    }
    let shell = args.shell.unwrap_or_else(shell_from_env);
    crate::stdout::write(render(&plan, shell)).context("writing to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::location::{tests::location, SpeedClass};

    fn app(bootable: bool) -> ApplianceFacts {
        let mut a = crate::health::appliance::tests::healthy();
        a.bootable = bootable;
        a
    }

    fn cache(path: &str, class: SpeedClass, free: u64, role: Role, active: bool) -> Location {
        let mut l = location(path, class, free);
        l.roles = vec![role];
        l.active_cache = active;
        l
    }

    /// libguestfs's environment with nothing exported.
    fn unset() -> LibguestfsEnv {
        LibguestfsEnv::new(None, None, None, None)
    }

    #[test]
    fn appliance_is_used_and_a_slow_cache_then_does_not_matter() {
        let locs = [
            cache("/var/tmp", SpeedClass::LocalRotational, 100 << 30, Role::VarTmp, true),
            cache("/dev/shm", SpeedClass::Memory, 10 << 30, Role::Shm, false),
        ];
        let plan = decide(&app(true), Source::Config, &unset(), &locs, 1.5);
        let names: Vec<_> = plan.vars.iter().map(|v| (v.name, v.value.as_str())).collect();
        assert_eq!(names, [("LIBGUESTFS_PATH", "/dev/shm/appliance")]);
        assert!(plan.notes.iter().any(|n| n.contains("qemu probe files")), "{:?}", plan.notes);
    }

    #[test]
    fn without_an_appliance_a_slow_cache_moves_to_shm() {
        let locs = [
            cache("/var/tmp", SpeedClass::LocalRotational, 100 << 30, Role::VarTmp, true),
            cache("/dev/shm", SpeedClass::Memory, 10 << 30, Role::Shm, false),
        ];
        let plan = decide(&app(false), Source::Config, &unset(), &locs, 1.5);
        let names: Vec<_> = plan.vars.iter().map(|v| (v.name, v.value.as_str())).collect();
        assert_eq!(names, [("LIBGUESTFS_CACHEDIR", "/dev/shm")]);
        let why = &plan.vars[0].why;
        assert!(why.contains("local-rotational") && why.contains("/var/tmp (default)"), "{why}");
        // A virtual disk's unknown speed is no reason to move it.
        let locs = [
            cache("/var/tmp", SpeedClass::Unknown, 100 << 30, Role::VarTmp, true),
            cache("/dev/shm", SpeedClass::Memory, 10 << 30, Role::Shm, false),
        ];
        let plan = decide(&app(false), Source::Config, &unset(), &locs, 1.5);
        assert!(plan.vars.is_empty(), "{:?}", plan.vars);
    }

    #[test]
    fn good_cache_is_left_alone_and_missing_appliance_explained() {
        let locs = [cache("/var/tmp", SpeedClass::LocalSsd, 100 << 30, Role::VarTmp, true)];
        let plan = decide(&app(false), Source::Config, &unset(), &locs, 1.5);
        assert!(plan.vars.is_empty());
        assert!(plan.notes[0].contains("guestfs-appliance build"), "{:?}", plan.notes);
        // Too small, and nothing better: explained, not set.
        let locs = [cache("/var/tmp", SpeedClass::LocalSsd, 10 << 20, Role::VarTmp, true)];
        let plan = decide(&app(false), Source::Config, &unset(), &locs, 1.5);
        assert!(plan.vars.is_empty() && plan.notes[1].contains("no fast location"), "{:?}", plan.notes);
    }

    /// Issue 7 item 5: an exported LIBGUESTFS_PATH is what libguestfs uses.
    #[test]
    fn exported_path_is_kept_or_explained() {
        let locs = [cache("/var/tmp", SpeedClass::LocalSsd, 100 << 30, Role::VarTmp, true)];
        let mut lg = unset();
        lg.path_var = Some("/dev/shm/appliance:/other".into());
        let plan = decide(&app(true), Source::LibguestfsPath, &lg, &locs, 1.5);
        assert_eq!(plan.vars[0].value, "/dev/shm/appliance:/other");
        assert!(plan.vars[0].why.contains("kept from your environment"), "{:?}", plan.vars);
        // It leads nowhere: launches fail, and it says so.
        let plan = decide(&app(false), Source::LibguestfsPath, &lg, &locs, 1.5);
        assert!(plan.vars.is_empty());
        assert!(
            plan.notes[0].starts_with("LIBGUESTFS_PATH=/dev/shm/appliance:/other (from your environment)")
                && plan.notes[0].contains("launches fail"),
            "{:?}",
            plan.notes
        );
        // --dir elsewhere: replaces it, and says what it replaces.
        let plan = decide(&app(true), Source::Flag, &lg, &locs, 1.5);
        assert!(
            plan.vars[0].why.contains("replaces LIBGUESTFS_PATH=/dev/shm/appliance:/other"),
            "{:?}",
            plan.vars
        );
    }

    #[test]
    fn quoting_per_shell() {
        assert_eq!(quote(Shell::Sh, "/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(quote(Shell::Fish, r"/a\b'c"), r"'/a\\b\'c'");
        let plan = EnvPlan {
            vars: vec![EnvVar { name: "LIBGUESTFS_PATH", value: "/x".into(), why: "because".into() }],
            notes: vec!["note".into()],
            appliance_dir: "/x".into(),
        };
        assert_eq!(
            render(&plan, Shell::Sh),
            "# LIBGUESTFS_PATH: because\nexport LIBGUESTFS_PATH='/x'\n# note\n"
        );
        assert!(render(&plan, Shell::Fish).contains("set -gx LIBGUESTFS_PATH '/x'\n"));
        assert!(render(&plan, Shell::Csh).contains("setenv LIBGUESTFS_PATH '/x';\n"));
    }

    #[test]
    fn templates_render_without_placeholders() {
        let plan = EnvPlan {
            vars: vec![
                EnvVar { name: "LIBGUESTFS_PATH", value: "/dev/shm/appliance".into(), why: "w1".into() },
                EnvVar { name: "LIBGUESTFS_CACHEDIR", value: "/dev/shm".into(), why: "w2".into() },
            ],
            notes: vec![],
            appliance_dir: "/dev/shm/appliance".into(),
        };
        let p = render_profile(&plan);
        assert!(!p.contains('@'), "{p}");
        assert!(p.contains("export LIBGUESTFS_PATH='/dev/shm/appliance'"), "{p}");
        assert!(p.contains("if [ -z \"${LIBGUESTFS_CACHEDIR-}\" ]"), "{p}");
        let e = render_environment_d(&plan).unwrap();
        assert!(!e.contains('@'), "{e}");
        assert!(e.lines().any(|l| l == "LIBGUESTFS_CACHEDIR=/dev/shm"), "{e}");
        let mut bad = plan.clone();
        bad.vars[0].value = "/a b".into();
        assert!(render_environment_d(&bad).unwrap_err().to_string().contains("spaces"));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("etc/profile.d/x.sh");
        write_atomic(&p, "one\n").unwrap();
        write_atomic(&p, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
    }
}
