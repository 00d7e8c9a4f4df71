//! The Prometheus text exposition format, for node_exporter's textfile
//! collector: every family a gauge named `guestfs_appliance_*`, labels
//! escaped, no sample before its `# HELP`/`# TYPE` lines.

use std::fmt::Write as _;

use super::nagios::nagios_code;
use crate::health::libguestfs::Source;
use crate::health::location::WriteTest;
use crate::health::Report;

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
pub(crate) fn prometheus(r: &Report) -> String {
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
    let source = |s: Source| {
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
    use crate::health::report::tests::report;

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
}
