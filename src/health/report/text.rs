//! The text format for people: locations, appliance, virtualization and
//! libguestfs rows, grouped and aligned, then every problem with its fix.
//! Colour comes from the caller's [`Paint`] and only decorates.

use std::fmt::Write as _;

use crate::health::libguestfs::ApplianceKind;
use crate::health::location::{Location, Role, WriteTest};
use crate::health::virt::BootTarget;
use crate::health::{CheckStatus, EnvironmentFacts, Finding, Report, Severity};
use crate::printer::human_bytes;

/// Colours for the text report: `paint(code, text)`.
pub(crate) type Paint<'a> = &'a dyn Fn(&str, &str) -> String;

fn roles_text(l: &Location, fixed_in_use: bool) -> String {
    let mut parts: Vec<&str> = l
        .roles
        .iter()
        .map(|r| match r {
            Role::Appliance => "appliance",
            Role::Cachedir => "$LIBGUESTFS_CACHEDIR",
            Role::Tmpdir => "$TMPDIR",
            Role::VarTmp => "/var/tmp",
            Role::Shm => "/dev/shm",
        })
        .collect();
    if l.active_cache && fixed_in_use {
        parts.push("cache in use, qemu probe files only");
    } else if l.active_cache {
        parts.push("cache in use");
    }
    parts.join(", ")
}

fn age_text(secs: u64) -> String {
    match secs {
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// What libguestfs does here, for the human report's `libguestfs` row.
fn libguestfs_text(env: &EnvironmentFacts, paint: Paint) -> String {
    let lg = &env.libguestfs;
    let origin = match &lg.path_var {
        Some(v) => format!("LIBGUESTFS_PATH={v}"),
        None => "LIBGUESTFS_PATH unset: its default path".into(),
    };
    let Some(found) = &lg.appliance else {
        return paint("31", &format!("finds no appliance ({origin}): launches fail"));
    };
    let this = env.examined_is_in_use();
    let what = match (found.kind, this) {
        (ApplianceKind::Fixed, true) => "boots this fixed appliance".to_string(),
        (kind, _) => format!("uses {} in {}", kind.describe(), found.dir.display()),
    };
    let hint = if this {
        String::new()
    } else {
        format!(
            "; this one is used only with LIBGUESTFS_PATH={} (`guestfs-appliance env`)",
            env.examined_dir.display()
        )
    };
    format!("{what} ({origin}){hint}")
}

/// The report for people.
pub(crate) fn human(r: &Report, paint: Paint) -> String {
    let mut o = String::new();
    let head = |o: &mut String, t: &str| {
        let _ = writeln!(o, "{}", paint("1", t));
    };
    let row = |o: &mut String, k: &str, v: String| {
        let _ = writeln!(o, "  {k:<12} {v}");
    };
    head(&mut o, "Locations");
    let width = r.facts.locations.iter().map(|l| l.path.as_os_str().len()).max().unwrap_or(0);
    for l in &r.facts.locations {
        let path = l.path.display().to_string();
        if let Some(e) = &l.error {
            let _ = writeln!(o, "  {path:<width$}  {}", paint("31", e));
            continue;
        }
        let inodes = l.free_inodes.map(|i| format!(", {i} inodes free")).unwrap_or_default();
        let disks: Vec<String> = l
            .disks
            .iter()
            .map(|d| if d.is_virtual { format!("{} (virtual)", d.name) } else { d.name.clone() })
            .collect();
        let disks = if disks.is_empty() { String::new() } else { format!(" on {}", disks.join("+")) };
        let class = if l.class.is_slow() { paint("33", l.class.name()) } else { l.class.name().to_string() };
        let _ = writeln!(
            o,
            "  {path:<width$}  {:<8} {class:<16} {} free of {}{inodes}{disks}  [{}]",
            l.fs_type,
            human_bytes(l.free_bytes),
            human_bytes(l.total_bytes),
            roles_text(l, r.facts.environment.libguestfs.uses_fixed_appliance())
        );
        match &l.write_test {
            Some(WriteTest::Measured { mb_per_s, fsync_ms, bytes }) => {
                let _ = writeln!(
                    o,
                    "  {:width$}  write test: {mb_per_s:.0} MB/s ({}), fsync {fsync_ms:.2} ms",
                    "",
                    human_bytes(*bytes)
                );
            }
            Some(WriteTest::Skipped { reason }) => {
                let _ = writeln!(o, "  {:width$}  write test skipped: {reason}", "");
            }
            Some(WriteTest::Failed { error }) => {
                let _ = writeln!(o, "  {:width$}  write test failed: {error}", "");
            }
            None => {}
        }
    }
    let a = &r.facts.appliance;
    let env = &r.facts.environment;
    let _ = writeln!(o);
    head(&mut o, &format!("Appliance {} ({})", a.dir.display(), env.examined_dir_source.phrase()));
    row(&mut o, "libguestfs", libguestfs_text(env, paint));
    let lg = &env.libguestfs;
    let mut cache = format!(
        "{}/.guestfs-{} ({})",
        lg.cachedir.display(),
        nix::unistd::geteuid(),
        lg.cachedir_source.phrase()
    );
    cache.push_str(if lg.uses_fixed_appliance() {
        ", qemu probe files only"
    } else {
        ", where supermin builds the appliance"
    });
    for e in &lg.cachedir_errors {
        cache.push_str(&format!("; {}", paint("33", e)));
    }
    row(&mut o, "cache", cache);
    if !a.exists {
        row(&mut o, "files", "none (not built)".into());
    } else {
        let files: Vec<String> = a
            .files
            .iter()
            .map(|f| if f.present { f.name.clone() } else { format!("{} (missing)", f.name) })
            .collect();
        row(&mut o, "files", files.join(" "));
        if let Some(root) = &a.root {
            let text = if root.valid {
                format!(
                    "ext2, UUID {}, {} ({} free inside)",
                    root.uuid.as_deref().unwrap_or("?"),
                    human_bytes(root.size_bytes),
                    human_bytes(root.free_bytes)
                )
            } else {
                paint("31", root.error.as_deref().unwrap_or("invalid"))
            };
            row(&mut o, "root", text);
        }
        let k = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
        row(
            &mut o,
            "kernel",
            format!(
                "{} (kernel file {}, host would use {})",
                k(&a.manifest_kernel),
                k(&a.image_kernel),
                k(&a.host_kernel)
            ),
        );
        if let Some(age) = a.age_seconds {
            row(&mut o, "age", format!("{}, {} allocated", age_text(age), human_bytes(a.allocated_bytes)));
        }
        if let Some(f) = &a.freshness {
            let text = match f.status() {
                "stale" => paint("33", &format!("stale ({} changes)", f.changes().len())),
                "fresh" => "fresh".to_string(),
                _ => format!("unknown ({})", f.reason().unwrap_or("?")),
            };
            row(&mut o, "freshness", text);
        }
    }
    let need = if a.need_is_estimate { "estimated" } else { "measured" };
    row(&mut o, "needs", format!("{} per copy ({need})", human_bytes(a.need_bytes)));

    let v = &r.facts.virtualization;
    let _ = writeln!(o);
    head(&mut o, "Virtualization");
    let kvm = match (v.kvm.device_present, v.kvm.openable) {
        (false, _) => "missing".to_string(),
        (true, false) => format!("present, not openable ({})", v.kvm.error.as_deref().unwrap_or("?")),
        (true, true) => "present, opens read-write".to_string(),
    };
    let usable = match v.kvm.usable {
        Some(true) => "; guests start",
        Some(false) => "; guests do NOT start",
        None => "",
    };
    row(&mut o, "/dev/kvm", format!("{kvm}{usable}"));
    let flags = match (v.cpu.vmx, v.cpu.svm) {
        (true, _) => "vmx",
        (_, true) => "svm",
        _ => "no vmx/svm",
    };
    let vm = if v.machine.in_vm {
        let who: Vec<&str> =
            [&v.machine.vendor, &v.machine.product].iter().filter_map(|x| x.as_deref()).collect();
        format!(
            "; inside a VM{}",
            if who.is_empty() { String::new() } else { format!(" ({})", who.join(" ")) }
        )
    } else {
        String::new()
    };
    row(&mut o, "cpu", format!("{}; {flags}{vm}", if v.cpu.model.is_empty() { "?" } else { &v.cpu.model }));
    row(
        &mut o,
        "qemu",
        match &v.qemu {
            Some(q) => {
                format!("{} {}", q.path.display(), q.version.as_deref().unwrap_or("(version unknown)"))
            }
            None => paint("31", "not found"),
        },
    );
    row(&mut o, "libguestfs", v.libguestfs.clone().unwrap_or_else(|| "not installed".into()));
    for b in &v.boots {
        let what = match (b.target, &b.kernel) {
            (BootTarget::Appliance, _) => "the appliance".to_string(),
            (BootTarget::HostKernel, k) => {
                format!("host kernel {} + test initrd (no appliance built)", k.as_deref().unwrap_or("?"))
            }
        };
        let error = b.error.as_deref().unwrap_or("?");
        let text = if b.came_up {
            format!("{what}: came up in {:.1} s", b.seconds)
        } else if b.cut_short {
            paint("33", &format!("{what}: not finished ({:.1} s): {error}", b.seconds))
        } else {
            paint("31", &format!("{what}: did not come up ({:.1} s): {error}", b.seconds))
        };
        row(&mut o, &format!("boot {}", b.accel), text);
    }
    if let Some(why) = &v.boot_skipped {
        row(&mut o, "boot", format!("not tested: {why}"));
    }

    let _ = writeln!(o);
    let (problems, notes): (Vec<&Finding>, Vec<&Finding>) =
        r.findings.iter().partition(|f| f.severity > Severity::Info);
    if problems.is_empty() {
        let _ = writeln!(o, "{}", paint("32", "No problems found."));
    } else {
        head(&mut o, "Problems");
        for f in problems {
            let label = match f.severity {
                Severity::Critical => paint("31", "CRITICAL"),
                _ => paint("33", "WARNING "),
            };
            let _ = writeln!(o, "  {label} {} ({}): {}", f.subject, f.probe, f.message);
            let _ = writeln!(o, "           fix: {}", f.remedy);
        }
    }
    if !notes.is_empty() {
        head(&mut o, "Notes");
        for f in notes {
            let _ = writeln!(o, "  {} {} ({}): {}", paint("36", "INFO    "), f.subject, f.probe, f.message);
            let _ = writeln!(o, "           {}", f.remedy);
        }
    }
    let errors: Vec<_> = r.checks.iter().filter(|c| c.result == CheckStatus::Error).collect();
    for c in &errors {
        let _ = writeln!(
            o,
            "  {} {} ({}): {}",
            paint("2", "could not check"),
            c.subject,
            c.probe,
            c.reason.as_deref().unwrap_or("?")
        );
    }
    let s = &r.summary;
    let _ = writeln!(
        o,
        "\n{} critical, {} warnings, {} passed, {} not checked, {} skipped{} ({:.2} s)",
        s.critical,
        s.warnings,
        s.passed + s.info,
        s.errors,
        s.skipped,
        if r.facts.probed { "" } else { " (add --probe to measure)" },
        r.duration_seconds
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::tests::report;

    #[test]
    fn human_lists_problems_with_fixes_and_colour_only_decorates() {
        let r = report(|f| f.virtualization.kvm.openable = false);
        let plain = human(&r, &|_, t| t.to_string());
        assert!(plain.contains("WARNING  /dev/kvm (virt.kvm-device)"), "{plain}");
        assert!(plain.contains("fix: add"), "{plain}");
        let coloured = human(&r, &|c, t| format!("\x1b[{c}m{t}\x1b[0m"));
        assert!(coloured.contains("\x1b[33mWARNING"));
        // Colour codes change padding widths only, never the words.
        assert_eq!(strip_ansi(&coloured).replace(' ', ""), plain.replace(' ', ""));
        let ok = human(&report(|_| {}), &|_, t| t.to_string());
        assert!(ok.contains("No problems found."), "{ok}");
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for d in chars.by_ref() {
                    if d == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
