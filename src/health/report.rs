//! Output formats of a [`Report`]: a grouped, aligned text report for
//! people (colour optional, each problem with its remedy), JSON (the
//! [`Report`] itself, schema in docs/status-schema.json), a Nagios plugin
//! line with perfdata and exit code, and the Prometheus text exposition
//! format for node_exporter's textfile collector.
//!
//! Rendering only: what the report contains is decided in `health/mod.rs`;
//! where it is written and the exit code policy in `commands/status.rs`.

use std::fmt::Write as _;

use super::libguestfs::ApplianceKind;
use super::location::{Location, Role, WriteTest};
use super::virt::BootTarget;
use super::{Finding, Overall, Report, Severity};
use crate::printer::human_bytes;

/// Nagios plugin exit code for an overall state (0 OK, 1 WARNING,
/// 2 CRITICAL, 3 UNKNOWN).
pub fn nagios_code(o: Overall) -> u8 {
    match o {
        Overall::Ok => 0,
        Overall::Warning => 1,
        Overall::Critical => 2,
        Overall::Unknown => 3,
    }
}

fn nagios_word(o: Overall) -> &'static str {
    match o {
        Overall::Ok => "OK",
        Overall::Warning => "WARNING",
        Overall::Critical => "CRITICAL",
        Overall::Unknown => "UNKNOWN",
    }
}

/// The Nagios line for a run that could not produce a report (usage
/// error, bad config, `--timeout` hit): `GUESTFS-APPLIANCE UNKNOWN - why`.
pub fn nagios_unknown(why: &str) -> String {
    // `|` would start perfdata; newlines would start long output.
    format!("GUESTFS-APPLIANCE UNKNOWN - {}\n", why.replace('|', "/").replace('\n', " "))
}

/// The JSON report (pretty, one trailing newline).
///
/// Errors: only if serialisation fails, which plain data cannot.
pub fn json(r: &Report) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string_pretty(r)? + "\n")
}

/// Colours for the text report: `paint(code, text)`.
pub type Paint<'a> = &'a dyn Fn(&str, &str) -> String;

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
fn libguestfs_text(env: &super::EnvironmentFacts, paint: Paint) -> String {
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
pub fn human(r: &Report, paint: Paint) -> String {
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
    let errors: Vec<_> = r.checks.iter().filter(|c| c.result == super::CheckStatus::Error).collect();
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

/// Quote a Nagios perfdata label.
fn perf_label(s: &str) -> String {
    format!("'{}'", s.replace('\'', "\"").replace('=', "_"))
}

/// The Nagios plugin output: `GUESTFS-APPLIANCE STATE - summary | perfdata`
/// then one line per finding (long output). The exit code is
/// [`nagios_code`] of the report's status.
pub fn nagios(r: &Report) -> String {
    let s = &r.summary;
    let problems: Vec<&Finding> = r.findings.iter().filter(|f| f.severity > Severity::Info).collect();
    let text = if problems.is_empty() && s.errors == 0 {
        format!("{} checks passed", s.passed + s.info)
    } else {
        let mut first: Vec<String> =
            problems.iter().take(2).map(|f| format!("{}: {}", f.subject, f.message)).collect();
        if problems.is_empty() {
            first = r
                .checks
                .iter()
                .filter(|c| c.result == super::CheckStatus::Error)
                .take(2)
                .map(|c| format!("{} not checked: {}", c.probe, c.reason.as_deref().unwrap_or("?")))
                .collect();
        }
        format!(
            "{} critical, {} warnings, {} not checked: {}",
            s.critical,
            s.warnings,
            s.errors,
            first.join("; ")
        )
    };
    let mut perf = Vec::new();
    for l in r.facts.locations.iter().filter(|l| l.error.is_none()) {
        let p = l.path.display();
        if l.in_use() {
            // Ranges "N:" alert below N (Nagios plugin guidelines).
            let warn = (l.need_bytes as f64 * r.margin) as u64;
            perf.push(format!(
                "{}={}B;{warn}:;{}:;0;{}",
                perf_label(&format!("{p} free")),
                l.free_bytes,
                l.need_bytes,
                l.total_bytes
            ));
        } else {
            perf.push(format!(
                "{}={}B;;;0;{}",
                perf_label(&format!("{p} free")),
                l.free_bytes,
                l.total_bytes
            ));
        }
        if let Some(WriteTest::Measured { mb_per_s, fsync_ms, .. }) = &l.write_test {
            perf.push(format!("{}={:.1}", perf_label(&format!("{p} write MB/s")), mb_per_s));
            perf.push(format!("{}={:.2}ms", perf_label(&format!("{p} fsync")), fsync_ms));
        }
    }
    if let Some(age) = r.facts.appliance.age_seconds {
        perf.push(format!("appliance_age={age}s"));
    }
    for b in &r.facts.virtualization.boots {
        perf.push(format!("boot_{}={:.2}s", b.accel, b.seconds));
    }
    perf.push(format!("duration={:.3}s", r.duration_seconds));
    // `|` starts the perfdata: keep it out of the text.
    let text = text.replace('|', "/");
    let mut out = format!("GUESTFS-APPLIANCE {} - {text} | {}\n", nagios_word(r.status), perf.join(" "));
    for f in &r.findings {
        let sev = match f.severity {
            Severity::Critical => "CRITICAL",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        };
        let line = format!("{sev}: {} ({}): {} Fix: {}", f.subject, f.probe, f.message, f.remedy);
        let _ = writeln!(out, "{}", line.replace('|', "/"));
    }
    out
}

/// Escape a Prometheus label value.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One metric family being built.
struct Family {
    name: &'static str,
    help: &'static str,
    samples: Vec<(Vec<(&'static str, String)>, f64)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str) -> Self {
        Family { name, help, samples: Vec::new() }
    }
    fn add(&mut self, labels: Vec<(&'static str, String)>, value: f64) {
        self.samples.push((labels, value));
    }
    fn render(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} gauge", self.name);
        for (labels, value) in &self.samples {
            let labels = if labels.is_empty() {
                String::new()
            } else {
                let l: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label_value(v))).collect();
                format!("{{{}}}", l.join(","))
            };
            let _ = writeln!(out, "{}{labels} {value}", self.name);
        }
    }
}

fn b(v: bool) -> f64 {
    if v {
        1.0
    } else {
        0.0
    }
}

/// The Prometheus text exposition format (every family a gauge, names
/// `guestfs_appliance_*`, stable across releases of the same schema
/// version).
pub fn prometheus(r: &Report) -> String {
    let mut fams = Vec::new();
    let mut f = Family::new(
        "guestfs_appliance_status",
        "Overall health: 0 ok, 1 warning, 2 critical, 3 unknown (Nagios codes).",
    );
    f.add(vec![], f64::from(nagios_code(r.status)));
    fams.push(f);
    let mut f = Family::new("guestfs_appliance_findings", "Problems found, by severity.");
    f.add(vec![("severity", "info".into())], r.summary.info as f64);
    f.add(vec![("severity", "warning".into())], r.summary.warnings as f64);
    f.add(vec![("severity", "critical".into())], r.summary.critical as f64);
    fams.push(f);
    let mut f = Family::new("guestfs_appliance_checks", "Checks by result.");
    for (k, v) in [
        ("pass", r.summary.passed),
        ("info", r.summary.info),
        ("warning", r.summary.warnings),
        ("critical", r.summary.critical),
        ("error", r.summary.errors),
        ("skipped", r.summary.skipped),
    ] {
        f.add(vec![("result", k.into())], v as f64);
    }
    fams.push(f);

    let mut info = Family::new(
        "guestfs_appliance_location_info",
        "Appliance and cache locations (value 1) with file system and speed class.",
    );
    let mut free =
        Family::new("guestfs_appliance_location_free_bytes", "Bytes available to unprivileged users.");
    let mut size =
        Family::new("guestfs_appliance_location_size_bytes", "Size of the file system holding the location.");
    let mut inodes = Family::new(
        "guestfs_appliance_location_free_inodes",
        "Free inodes of the file system holding the location.",
    );
    let mut room = Family::new(
        "guestfs_appliance_location_has_room",
        "1 if the location has room for an appliance copy with the configured margin.",
    );
    let mut write = Family::new(
        "guestfs_appliance_location_write_bytes_per_second",
        "--probe: write + fsync throughput.",
    );
    let mut fsync = Family::new(
        "guestfs_appliance_location_fsync_seconds",
        "--probe: median latency of a 4 KiB write + fdatasync.",
    );
    for l in r.facts.locations.iter().filter(|l| l.error.is_none()) {
        let p = l.path.display().to_string();
        let roles: Vec<String> = l
            .roles
            .iter()
            .map(|r| {
                serde_json::to_value(r).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
            })
            .collect();
        info.add(
            vec![
                ("path", p.clone()),
                ("roles", roles.join(",")),
                ("active_cache", if l.active_cache { "true" } else { "false" }.into()),
                ("fstype", l.fs_type.clone()),
                ("class", l.class.name().into()),
            ],
            1.0,
        );
        free.add(vec![("path", p.clone())], l.free_bytes as f64);
        size.add(vec![("path", p.clone())], l.total_bytes as f64);
        if let Some(i) = l.free_inodes {
            inodes.add(vec![("path", p.clone())], i as f64);
        }
        room.add(vec![("path", p.clone())], b(l.has_room(r.margin)));
        if let Some(WriteTest::Measured { mb_per_s, fsync_ms, .. }) = &l.write_test {
            write.add(vec![("path", p.clone())], mb_per_s * 1e6);
            fsync.add(vec![("path", p.clone())], fsync_ms / 1000.0);
        }
    }
    fams.extend([info, free, size, inodes, room, write, fsync]);

    let env = &r.facts.environment;
    let mut f = Family::new(
        "guestfs_appliance_environment_info",
        "What libguestfs uses here (value 1): the appliance its search path leads to (kind none = launches \
         fail), its cache base, and the appliance directory examined, each with where it came from.",
    );
    let kind = env.libguestfs.appliance.as_ref().map_or("none".to_string(), |a| {
        serde_json::to_value(a.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    });
    let source = |s: super::libguestfs::Source| {
        serde_json::to_value(s).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
    };
    f.add(
        vec![
            ("appliance_kind", kind),
            (
                "appliance",
                env.libguestfs.appliance.as_ref().map(|a| a.dir.display().to_string()).unwrap_or_default(),
            ),
            ("search_path_source", source(env.libguestfs.search_path_source)),
            ("cachedir", env.libguestfs.cachedir.display().to_string()),
            ("cachedir_source", source(env.libguestfs.cachedir_source)),
            ("examined_dir", env.examined_dir.display().to_string()),
            ("examined_dir_source", source(env.examined_dir_source)),
        ],
        1.0,
    );
    fams.push(f);

    let a = &r.facts.appliance;
    let dir = a.dir.display().to_string();
    let mut f = Family::new(
        "guestfs_appliance_bootable",
        "1 if the fixed appliance has kernel, initrd and a valid ext2 root.",
    );
    f.add(vec![("dir", dir.clone())], b(a.bootable));
    fams.push(f);
    let mut f = Family::new(
        "guestfs_appliance_need_bytes",
        "Bytes one copy of the appliance needs (measured, or a fixed estimate).",
    );
    f.add(vec![("dir", dir.clone())], a.need_bytes as f64);
    fams.push(f);
    let mut f = Family::new("guestfs_appliance_allocated_bytes", "Bytes allocated by the appliance's files.");
    if a.exists {
        f.add(vec![("dir", dir.clone())], a.allocated_bytes as f64);
    }
    fams.push(f);
    let mut f = Family::new(
        "guestfs_appliance_fresh",
        "1 if the appliance matches the host, 0 if stale (absent when unknown).",
    );
    if let Some(fr) = a.freshness.as_ref().filter(|f| f.status() != "unknown") {
        f.add(vec![("dir", dir.clone())], b(fr.status() == "fresh"));
    }
    fams.push(f);
    let mut f = Family::new("guestfs_appliance_built_timestamp_seconds", "When the appliance was built.");
    if let Some(t) = a.built_at {
        f.add(vec![("dir", dir.clone())], t as f64);
    }
    fams.push(f);
    let mut f = Family::new(
        "guestfs_appliance_kernel_info",
        "Kernel releases of the appliance and the host (value 1).",
    );
    if let Some(k) = &a.manifest_kernel {
        f.add(
            vec![
                ("dir", dir.clone()),
                ("appliance", k.clone()),
                ("host", a.host_kernel.clone().unwrap_or_default()),
            ],
            1.0,
        );
    }
    fams.push(f);

    let v = &r.facts.virtualization;
    let mut f =
        Family::new("guestfs_appliance_kvm_device_openable", "1 if /dev/kvm exists and opens read-write.");
    f.add(vec![], b(v.kvm.openable));
    fams.push(f);
    let mut f = Family::new("guestfs_appliance_kvm_usable", "--probe: 1 if a guest came up under KVM.");
    if let Some(u) = v.kvm.usable {
        f.add(vec![], b(u));
    }
    fams.push(f);
    let mut f = Family::new("guestfs_appliance_cpu_virtualization", "1 if the CPU exposes vmx or svm.");
    f.add(vec![], b(v.cpu.vmx || v.cpu.svm));
    fams.push(f);
    let mut f = Family::new("guestfs_appliance_in_vm", "1 if this machine is itself a VM.");
    f.add(vec![], b(v.machine.in_vm));
    fams.push(f);
    let mut f = Family::new("guestfs_appliance_qemu_info", "qemu found (value 1), with its version.");
    if let Some(q) = &v.qemu {
        f.add(
            vec![("path", q.path.display().to_string()), ("version", q.version.clone().unwrap_or_default())],
            1.0,
        );
    }
    fams.push(f);
    let mut f =
        Family::new("guestfs_appliance_libguestfs_info", "libguestfs installed (value 1), with its version.");
    if let Some(l) = &v.libguestfs {
        f.add(vec![("version", l.clone())], 1.0);
    }
    fams.push(f);
    let mut up = Family::new(
        "guestfs_appliance_boot_up",
        "--probe: 1 if a test guest (the appliance, or the host kernel when none is built) came up under the accelerator.",
    );
    let mut secs = Family::new(
        "guestfs_appliance_boot_seconds",
        "--probe: seconds until the appliance came up (or the attempt ended).",
    );
    for bt in &v.boots {
        let target = serde_json::to_value(bt.target)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        up.add(vec![("accel", bt.accel.into()), ("target", target.clone())], b(bt.came_up));
        secs.add(vec![("accel", bt.accel.into()), ("target", target)], bt.seconds);
    }
    fams.extend([up, secs]);
    let mut f = Family::new("guestfs_appliance_report_timestamp_seconds", "When this report was made.");
    f.add(vec![], r.generated_at as f64);
    fams.push(f);
    let mut f = Family::new("guestfs_appliance_report_duration_seconds", "Seconds spent making this report.");
    f.add(vec![], r.duration_seconds);
    fams.push(f);

    let mut out = String::new();
    for f in &fams {
        f.render(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthConfig;
    use crate::health::tests::healthy_facts;

    fn report(f: impl FnOnce(&mut crate::health::Facts)) -> Report {
        let mut facts = healthy_facts();
        f(&mut facts);
        Report::new(facts, &HealthConfig::default(), &[], std::time::Instant::now())
    }

    #[test]
    fn nagios_line_and_codes() {
        let r = report(|_| {});
        let text = nagios(&r);
        assert!(text.starts_with("GUESTFS-APPLIANCE OK - "), "{text}");
        assert!(text.contains("'/dev/shm/appliance free'="), "{text}");
        assert_eq!(nagios_code(r.status), 0);
        let r = report(|f| f.virtualization.kvm.openable = false);
        assert!(
            nagios(&r).starts_with("GUESTFS-APPLIANCE WARNING - 0 critical, 1 warnings"),
            "{}",
            nagios(&r)
        );
        assert_eq!(nagios_code(r.status), 1);
        let r = report(|f| f.virtualization.qemu = None);
        assert_eq!(nagios_code(r.status), 2);
        assert!(nagios(&r).lines().nth(1).unwrap().starts_with("CRITICAL: qemu (virt.qemu)"));
        let r = report(|f| f.appliance.manifest_kernel = None);
        assert_eq!(nagios_code(r.status), 3, "{}", nagios(&r));
    }

    #[test]
    fn prometheus_has_help_type_and_escaped_labels() {
        let r = report(|f| f.locations[0].path = "/weird\"path\\x".into());
        let text = prometheus(&r);
        assert!(text.contains("# HELP guestfs_appliance_status "));
        assert!(
            text.contains("# TYPE guestfs_appliance_status gauge\nguestfs_appliance_status 0\n"),
            "{text}"
        );
        assert!(text.contains(r#"path="/weird\"path\\x""#), "{text}");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("guestfs_appliance_"), "{line}");
        }
        // No sample without its TYPE line first.
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(typed.contains(name), "{name}");
            }
        }
    }

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

    #[test]
    fn json_has_version_and_sections() {
        let r = report(|_| {});
        let v: serde_json::Value = serde_json::from_str(&json(&r).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["status"], "ok");
        assert!(v["locations"].is_array() && v["appliance"].is_object() && v["virtualization"].is_object());
    }
}
