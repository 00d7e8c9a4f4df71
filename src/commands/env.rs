//! `env`: the environment libguestfs should run with on this machine, in
//! the syntax of a shell, with a comment saying why each variable is set;
//! or, with `--install`, the same written to /etc/profile.d and
//! /etc/environment.d (rendered from templates/, written atomically).
//!
//! `LIBGUESTFS_PATH` is set when the fixed appliance is bootable;
//! `LIBGUESTFS_CACHEDIR` when the cache libguestfs would use (its own
//! search order: `$LIBGUESTFS_CACHEDIR`, `$TMPDIR`, `/var/tmp`) is slow or
//! too small and a fast location with room exists. The assessment is
//! `crate::health`'s; this file only decides and renders.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::cli::{EnvArgs, Shell};
use crate::config::Config;
use crate::health::appliance::{self, ApplianceFacts};
use crate::health::location::{self, Location, LocationSpec, Role};
use crate::health::HostRoots;
use crate::printer::{human_bytes, Printer};

const PROFILE_TEMPLATE: &str = include_str!("../../templates/profile.d.sh");
const ENVIRONMENT_D_TEMPLATE: &str = include_str!("../../templates/environment.d.conf");

/// Where `--install` writes, relative to `--root`.
pub const PROFILE_PATH: &str = "etc/profile.d/guestfs-appliance.sh";
/// Where `--install` writes the systemd environment.d file, relative to `--root`.
pub const ENVIRONMENT_D_PATH: &str = "etc/environment.d/50-guestfs-appliance.conf";

/// One variable to set, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    /// `LIBGUESTFS_PATH` or `LIBGUESTFS_CACHEDIR`.
    pub name: &'static str,
    /// Its value (an absolute path).
    pub value: String,
    /// One line: why.
    pub why: String,
}

/// What `env` decided: variables to set, and comments on what was not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvPlan {
    /// Variables to set.
    pub vars: Vec<EnvVar>,
    /// Comments on variables left alone.
    pub notes: Vec<String>,
    /// The appliance directory (for the profile.d guard).
    pub appliance_dir: String,
}

/// Decide the variables from the appliance and the assessed locations
/// (`margin`: health.space_margin).
pub fn decide(app: &ApplianceFacts, locations: &[Location], margin: f64) -> EnvPlan {
    let mut plan = EnvPlan { appliance_dir: app.dir.display().to_string(), ..Default::default() };
    if app.bootable {
        let kernel =
            app.manifest_kernel.as_deref().or(app.image_kernel.as_deref()).unwrap_or("unknown kernel");
        plan.vars.push(EnvVar {
            name: "LIBGUESTFS_PATH",
            value: plan.appliance_dir.clone(),
            why: format!(
                "boot the fixed appliance ({kernel}) directly instead of building one with supermin"
            ),
        });
    } else {
        plan.notes.push(format!(
            "LIBGUESTFS_PATH not set: no bootable appliance at {} (build one: guestfs-appliance build {})",
            app.dir.display(),
            app.dir.display()
        ));
    }
    let Some(active) = locations.iter().find(|l| l.active_cache) else {
        return plan;
    };
    let slow = active.class.is_slow();
    let small = !active.has_room(margin);
    if !slow && !small {
        plan.notes.push(format!(
            "LIBGUESTFS_CACHEDIR not changed: {} is {} with {} free",
            active.path.display(),
            active.class.name(),
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
                "the default cache {} {why_bad}; {} is {} with {} free",
                active.path.display(),
                best.path.display(),
                best.class.name(),
                human_bytes(best.free_bytes)
            ),
        }),
        None => plan.notes.push(format!(
            "LIBGUESTFS_CACHEDIR not set: the default cache {} {why_bad}, and no fast location with room was found",
            active.path.display()
        )),
    }
    plan
}

/// Quote `s` as one word for `shell`.
pub fn quote(shell: Shell, s: &str) -> String {
    match shell {
        Shell::Sh | Shell::Csh => format!("'{}'", s.replace('\'', "'\\''")),
        Shell::Fish => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
    }
}

/// Render the plan for `eval` in `shell`.
pub fn render(plan: &EnvPlan, shell: Shell) -> String {
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
pub fn render_profile(plan: &EnvPlan) -> String {
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
pub fn render_environment_d(plan: &EnvPlan) -> Result<String> {
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
pub fn shell_from_env() -> Shell {
    let shell = std::env::var_os("SHELL").map(PathBuf::from);
    match shell.as_deref().and_then(Path::file_name).and_then(|n| n.to_str()) {
        Some("fish") => Shell::Fish,
        Some("csh") | Some("tcsh") => Shell::Csh,
        _ => Shell::Sh,
    }
}

/// Write `text` to `path` atomically (temp file beside it, fsync, rename,
/// fsync the directory), mode 0644, creating the parent directories.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let parent = path.parent().context("install path has no parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = path.file_name().context("install path has no file name")?.to_string_lossy();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", parent.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Run `env`.
pub fn run(args: &EnvArgs, config: &Config, printer: &Printer) -> Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| config.appliance.dir.clone());
    let dir = if dir.is_absolute() {
        dir
    } else {
        std::env::current_dir().context("finding the current directory")?.join(dir)
    };
    let app = appliance::gather(&dir, config, false);
    let locations = location::assess(&LocationSpec::from_env(&dir, app.need_bytes), &HostRoots::default());
    let plan = decide(&app, &locations, config.health.space_margin);
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

    #[test]
    fn slow_cache_moves_to_shm_and_appliance_is_used() {
        let locs = [
            cache("/var/tmp", SpeedClass::LocalRotational, 100 << 30, Role::VarTmp, true),
            cache("/dev/shm", SpeedClass::Memory, 10 << 30, Role::Shm, false),
        ];
        let plan = decide(&app(true), &locs, 1.5);
        let names: Vec<_> = plan.vars.iter().map(|v| (v.name, v.value.as_str())).collect();
        assert_eq!(names, [("LIBGUESTFS_PATH", "/dev/shm/appliance"), ("LIBGUESTFS_CACHEDIR", "/dev/shm")]);
        assert!(plan.vars[1].why.contains("local-rotational"), "{}", plan.vars[1].why);
    }

    #[test]
    fn good_cache_is_left_alone_and_missing_appliance_explained() {
        let locs = [cache("/var/tmp", SpeedClass::LocalSsd, 100 << 30, Role::VarTmp, true)];
        let plan = decide(&app(false), &locs, 1.5);
        assert!(plan.vars.is_empty());
        assert!(plan.notes[0].contains("guestfs-appliance build"), "{:?}", plan.notes);
        // Too small, and nothing better: explained, not set.
        let locs = [cache("/var/tmp", SpeedClass::LocalSsd, 10 << 20, Role::VarTmp, true)];
        let plan = decide(&app(false), &locs, 1.5);
        assert!(plan.vars.is_empty() && plan.notes[1].contains("no fast location"), "{:?}", plan.notes);
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
