//! The Nagios plugin format: `GUESTFS-APPLIANCE STATE - summary |
//! perfdata`, then one line per finding (long output), and the plugin exit
//! code of each overall state (which the Prometheus format reuses as its
//! status value).

use std::fmt::Write as _;

use crate::health::location::WriteTest;
use crate::health::{CheckStatus, Finding, Overall, Report, Severity};

/// Nagios plugin exit code for an overall state (0 OK, 1 WARNING,
/// 2 CRITICAL, 3 UNKNOWN).
pub(crate) fn nagios_code(o: Overall) -> u8 {
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
pub(crate) fn nagios_unknown(why: &str) -> String {
    // `|` would start perfdata; newlines would start long output.
    format!("GUESTFS-APPLIANCE UNKNOWN - {}\n", why.replace('|', "/").replace('\n', " "))
}

/// Quote a Nagios perfdata label.
fn perf_label(s: &str) -> String {
    format!("'{}'", s.replace('\'', "\"").replace('=', "_"))
}

/// The Nagios plugin output: `GUESTFS-APPLIANCE STATE - summary | perfdata`
/// then one line per finding (long output). The exit code is
/// [`nagios_code`] of the report's status.
pub(crate) fn nagios(r: &Report) -> String {
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
                .filter(|c| c.result == CheckStatus::Error)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::tests::report;

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
}
