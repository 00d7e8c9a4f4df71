//! What `bench` measured, as data (serialised for `--json`, schema in
//! docs/bench-schema.json, `version` 1) and as the human table on stdout.
//! The numbers come from `mod.rs`; this file only arranges them.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::launch::ParallelBatch;
use super::stages::StageReport;
use super::stats::Summary;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BenchReport {
    /// Format version of this report.
    pub(crate) version: u32,
    /// `guestfs-appliance VERSION`.
    pub(crate) tool: String,
    /// The fixed appliance measured.
    pub(crate) appliance_dir: PathBuf,
    /// The directory holding libguestfs's supermin.d.
    pub(crate) supermin_dir: PathBuf,
    /// The environment the launches ran in.
    pub(crate) environment: Environment,
    /// Timed launches per appliance and workload.
    pub(crate) runs: usize,
    /// Discarded launches before them.
    pub(crate) warmup: usize,
    /// `guestfish -a /dev/null run`.
    pub(crate) launch: Comparison,
    /// `guestfish --ro -a IMAGE -i exit`, with `--inspect`.
    pub(crate) inspect: Option<Comparison>,
    /// Simultaneous launches of the fixed appliance, with `--parallel`.
    pub(crate) parallel: Vec<ParallelBatch>,
    /// One verbose launch per appliance in stages, with `--stages`.
    pub(crate) stages: Option<StageComparison>,
}

/// The environment of the measurement: what decides the numbers besides
/// the appliances.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Environment {
    /// `LIBGUESTFS_BACKEND`, if set.
    pub(crate) libguestfs_backend: Option<String>,
    /// `LIBGUESTFS_BACKEND_SETTINGS`, if set (`force_tcg` where KVM is
    /// unusable).
    pub(crate) libguestfs_backend_settings: Option<String>,
    /// From `guestfish --version`.
    pub(crate) libguestfs_version: Option<String>,
    /// CPUs this process may use.
    pub(crate) cpus: usize,
    /// 1, 5 and 15 minute load averages when the benchmark started.
    pub(crate) load_before: Option<[f64; 3]>,
    /// ... and when it ended.
    pub(crate) load_after: Option<[f64; 3]>,
}

/// One command timed with both appliances.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comparison {
    /// The guestfish command line.
    pub(crate) command: Vec<String>,
    /// Timed launches of the fixed appliance.
    pub(crate) fixed: Summary,
    /// Timed launches of libguestfs's supermin appliance.
    pub(crate) supermin: Summary,
    /// fixed mean / supermin mean (below 1: the fixed appliance is faster).
    pub(crate) ratio: Option<f64>,
    /// The discarded warm-up launches, seconds.
    pub(crate) warmup_fixed_s: Vec<f64>,
    /// The discarded warm-up launches (the first built the supermin
    /// appliance), seconds.
    pub(crate) warmup_supermin_s: Vec<f64>,
}

/// The stages of one verbose launch of each appliance.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StageComparison {
    /// The fixed appliance's launch.
    pub(crate) fixed: StageReport,
    /// The supermin appliance's launch.
    pub(crate) supermin: StageReport,
}

fn secs(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn load(v: Option<[f64; 3]>) -> String {
    v.map_or("unknown".into(), |l| format!("{:.2}", l[0]))
}

/// The human table (stdout).
pub(crate) fn render_human(r: &BenchReport) -> String {
    let mut out = String::new();
    let env = &r.environment;
    let var = |name: &str, v: &Option<String>| format!("{name}={}", v.as_deref().unwrap_or("(unset)"));
    let _ = writeln!(
        out,
        "fixed appliance {} vs libguestfs {} supermin appliance ({})",
        r.appliance_dir.display(),
        env.libguestfs_version.as_deref().unwrap_or("(version unknown)"),
        r.supermin_dir.display()
    );
    let _ = writeln!(
        out,
        "{} run{} each after {} warm-up, alternating; {} {}; {} CPU{}; load {} before, {} after",
        r.runs,
        if r.runs == 1 { "" } else { "s" },
        r.warmup,
        var("LIBGUESTFS_BACKEND", &env.libguestfs_backend),
        var("LIBGUESTFS_BACKEND_SETTINGS", &env.libguestfs_backend_settings),
        env.cpus,
        if env.cpus == 1 { "" } else { "s" },
        load(env.load_before),
        load(env.load_after),
    );
    comparison(&mut out, &r.launch);
    if let Some(i) = &r.inspect {
        comparison(&mut out, i);
    }
    if !r.parallel.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<34}{:>10}{:>12}{:>14}",
            "simultaneous launches (fixed)", "all ready", "all exited", "launches/min"
        );
        for b in &r.parallel {
            let _ = writeln!(
                out,
                "  {:<32}{:>10.2}{:>12.2}{:>14.1}",
                b.launches, b.all_ready_s, b.all_exited_s, b.launches_per_minute
            );
        }
    }
    if let Some(s) = &r.stages {
        let _ =
            writeln!(out, "\n{:<34}{:>10}{:>10}", "boot stages (LIBGUESTFS_DEBUG=1)", "fixed", "supermin");
        for (f, m) in s.fixed.stages.iter().zip(&s.supermin.stages) {
            let label = if f.detail { format!("  {}", f.label) } else { f.label.to_string() };
            let _ = writeln!(out, "  {label:<32}{:>10}{:>10}", secs(f.seconds), secs(m.seconds));
        }
        let _ =
            writeln!(out, "  {:<32}{:>10}{:>10}", "total", secs(s.fixed.total_s), secs(s.supermin.total_s));
        for (name, st) in [("fixed", &s.fixed), ("supermin", &s.supermin)] {
            if !st.missing.is_empty() {
                let names: Vec<&str> = st.missing.iter().map(|e| e.name()).collect();
                let _ = writeln!(out, "  ({name}: no marker for {})", names.join(", "));
            }
        }
    }
    out
}

fn comparison(out: &mut String, c: &Comparison) {
    let _ = writeln!(out, "\n{}", c.command.join(" "));
    let _ =
        writeln!(out, "  {:<32}{:>8}{:>8}{:>8}{:>8}{:>8}", "seconds", "mean", "sd", "min", "median", "max");
    for (name, s) in [("fixed", &c.fixed), ("supermin", &c.supermin)] {
        let _ = writeln!(
            out,
            "  {name:<32}{:>8.2}{:>8}{:>8.2}{:>8.2}{:>8.2}",
            s.mean_s,
            secs(s.sd_s),
            s.min_s,
            s.median_s,
            s.max_s
        );
    }
    let _ = writeln!(
        out,
        "  {:<32}{:>8}",
        "fixed / supermin",
        c.ratio.map_or("-".into(), |r| format!("{r:.2}×"))
    );
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::stages::{analyse, parse_log, StageReport};

    /// The stages of a recorded verbose launch (tests/fixtures/bench/).
    fn recorded(name: &str) -> StageReport {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bench").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (lines, exited) = parse_log(&text).unwrap();
        analyse(&lines, exited)
    }

    /// A report with every section, numbers from this machine's runs; the
    /// stages are those of the recorded consoles.
    pub(crate) fn sample() -> BenchReport {
        let cmp = |cmd: &[&str], f: &[f64], s: &[f64]| {
            let fixed = Summary::of(f).unwrap();
            let supermin = Summary::of(s).unwrap();
            Comparison {
                command: cmd.iter().map(|s| s.to_string()).collect(),
                ratio: crate::bench::stats::ratio(fixed.mean_s, supermin.mean_s),
                fixed,
                supermin,
                warmup_fixed_s: vec![13.9],
                warmup_supermin_s: vec![31.2],
            }
        };
        BenchReport {
            version: 1,
            tool: "guestfs-appliance 0.1.0".into(),
            appliance_dir: "/var/tmp/app".into(),
            supermin_dir: "/usr/lib/x86_64-linux-gnu/guestfs".into(),
            environment: Environment {
                libguestfs_backend: Some("direct".into()),
                libguestfs_backend_settings: Some("force_tcg".into()),
                libguestfs_version: Some("1.48.6".into()),
                cpus: 2,
                load_before: Some([0.5, 0.4, 0.3]),
                load_after: Some([1.2, 0.8, 0.5]),
            },
            runs: 3,
            warmup: 1,
            launch: cmp(&["guestfish", "-a", "/dev/null", "run"], &[12.7, 12.8, 12.9], &[13.1, 13.2, 13.4]),
            inspect: Some(cmp(
                &["guestfish", "--ro", "-a", "/tmp/guest.img", "-i", "exit"],
                &[15.0, 15.5, 16.0],
                &[16.0, 16.5, 17.0],
            )),
            parallel: vec![ParallelBatch::new(vec![12.5], 13.1), ParallelBatch::new(vec![20.1, 21.0], 22.0)],
            stages: Some(StageComparison {
                fixed: recorded("fixed-console.log"),
                supermin: recorded("supermin-console.log"),
            }),
        }
    }

    #[test]
    fn human_table_has_every_section() {
        let text = render_human(&sample());
        let expected_lines = [
            "fixed appliance /var/tmp/app vs libguestfs 1.48.6 supermin appliance (/usr/lib/x86_64-linux-gnu/guestfs)",
            "3 runs each after 1 warm-up, alternating; LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg; 2 CPUs; load 0.50 before, 1.20 after",
            "guestfish -a /dev/null run",
            "  seconds                             mean      sd     min  median     max",
            "  fixed                              12.80    0.10   12.70   12.80   12.90",
            "  supermin                           13.23    0.15   13.10   13.20   13.40",
            "  fixed / supermin                   0.97×",
            "  fixed                              15.50    0.50   15.00   15.50   16.00",
            "simultaneous launches (fixed)      all ready  all exited  launches/min",
            "  1                                    12.50       13.10           4.8",
            "  2                                    21.00       22.00           5.7",
            "boot stages (LIBGUESTFS_DEBUG=1)       fixed  supermin",
            // From the recorded consoles (tests/fixtures/bench/).
            "  libguestfs setup                      0.09      0.12",
            "  init: modules, root mount             2.68      2.63",
            "    of which loading modules            2.61         -",
            "  /init until udev settled              6.41      6.91",
            "  total                                26.07     26.03",
        ];
        for l in expected_lines {
            assert!(text.lines().any(|t| t == l), "missing line {l:?} in\n{text}");
        }
        assert!(text.lines().any(|l| l == "guestfish --ro -a /tmp/guest.img -i exit"), "{text}");
    }

    /// The sample (every section filled) against docs/bench-schema.json,
    /// with python3-jsonschema; the integration test checks a real run.
    #[test]
    fn json_matches_the_schema() {
        // Debian's python3 first: a pyenv shim on PATH may lack Debian's modules.
        let debian = std::path::PathBuf::from("/usr/bin/python3");
        let Some(py) = Some(debian).filter(|p| p.is_file()).or_else(|| crate::test_support::tool("python3"))
        else {
            return;
        };
        let schema = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench-schema.json");
        let script = "import json,sys\n\
                      try:\n import jsonschema\n\
                      except ImportError:\n print('no jsonschema'); sys.exit(3)\n\
                      s=json.load(open(sys.argv[1]))\n\
                      c=jsonschema.validators.validator_for(s)\n\
                      c.check_schema(s)\n\
                      jsonschema.validate(json.load(sys.stdin), s, cls=c)\n";
        let mut child = std::process::Command::new(py)
            .args(["-c", script, schema.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let json = serde_json::to_string(&sample()).unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(json.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.code() == Some(3) {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "python3-jsonschema is required under CI");
            eprintln!("skipping: python3-jsonschema not installed");
            return;
        }
        assert!(out.status.success(), "{}\n{json}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    fn json_has_the_documented_shape() {
        let v = serde_json::to_value(sample()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["launch"]["fixed"]["n"], 3);
        assert_eq!(v["launch"]["command"][0], "guestfish");
        assert!((v["launch"]["ratio"].as_f64().unwrap() - 12.8 / (39.7 / 3.0)).abs() < 1e-9);
        assert_eq!(v["parallel"][1]["launches"], 2);
        assert_eq!(v["stages"]["fixed"]["events"][0]["event"], "launch");
        assert_eq!(v["stages"]["supermin"]["stages"][4]["seconds"], serde_json::Value::Null);
        assert_eq!(v["environment"]["load_before"][0], 0.5);
    }
}
