//! One verbose launch split into boot stages, as libguestfs's boot-analysis
//! does (utils/boot-analysis/boot-analysis-timeline.c): find marker lines in
//! what `LIBGUESTFS_DEBUG=1 guestfish -a /dev/null run` prints on stderr
//! (libguestfs's own messages, the qemu command line, the serial console)
//! and time the stretches between them.
//!
//! Times are host times: when each line reached us, counted from the spawn
//! of guestfish (`process::Timed`), like boot-analysis's event timestamps.
//! One exception: the kernel replays its early messages only once the
//! serial console is registered (`printk: console [ttyS0] enabled`), so
//! their arrival says nothing about when the kernel started. That moment
//! comes from the `printk.time=1` stamps libguestfs puts on the kernel
//! command line: kernel start = min(arrival − stamp) over the kernel lines
//! before the init starts. Each line gives an upper bound: it never arrives
//! before it is printed, and its stamp never runs ahead of the time since
//! the kernel started (under TCG the guest clock follows the host's; early
//! stamps may read 0.000000 until a clock source is set up, and the clock
//! may restart once at `tsc-early`, both of which only make a bound
//! looser). The smallest is the tightest. Lines after the init starts are
//! left out so guest clock drift cannot creep in.
//!
//! The markers (`Event`) are chosen to exist in both appliances: our init
//! prints `init: ...` steps (init/src/main.rs), supermin's prints
//! `supermin: ...`; both print "deleting initramfs files" right after the
//! root is mounted. Verbose output itself slows a TCG boot (bash `set -x`
//! and the extra `/init` diagnostics on a slow serial console), so stage
//! times add up to more than a quiet launch: compare them with each other,
//! not with the launch baseline.
//!
//! This file also owns the console log format `--stages-log` writes and the
//! tests read (tests/fixtures/bench/): one `SECONDS TEXT` line per captured
//! line, `#` lines for comments, `# exited: SECONDS` for the exit.

use serde::Serialize;

/// One captured line: arrival time in seconds since the spawn, and text.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleLine {
    /// Seconds since guestfish was started.
    pub(crate) at: f64,
    /// The line as libguestfs printed it (its escapes, e.g. `\x1b`, kept).
    pub(crate) text: String,
}

/// A console log that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A line is neither a comment nor `SECONDS TEXT`.
    #[error("console log line {line}: expected `SECONDS TEXT` or a `#` comment, found {found:?}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// The start of the line.
        found: String,
    },
}

/// The moments a boot passes through, in boot order (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Event {
    /// guestfish started (time 0).
    Launch,
    /// libguestfs printed the qemu command line it is about to run.
    QemuStarted,
    /// SeaBIOS printed its banner.
    Firmware,
    /// The kernel started (from its printk stamps).
    KernelStarted,
    /// The appliance's init (ours or supermin's) printed its first line.
    InitStarted,
    /// Our init finished loading the initrd's modules (ours only).
    ModulesLoaded,
    /// The init mounted the root disk ("deleting initramfs files").
    RootMounted,
    /// libguestfs's /init script started ("Starting /init script").
    LibguestfsInit,
    /// `udevadm settle` returned (the next `set -x` line after it).
    UdevSettled,
    /// The daemon answered ("libguestfs: appliance is up").
    DaemonReady,
    /// guestfish exited.
    Exited,
}

impl Event {
    /// Every event, in boot order.
    pub(crate) const ALL: [Event; 11] = [
        Event::Launch,
        Event::QemuStarted,
        Event::Firmware,
        Event::KernelStarted,
        Event::InitStarted,
        Event::ModulesLoaded,
        Event::RootMounted,
        Event::LibguestfsInit,
        Event::UdevSettled,
        Event::DaemonReady,
        Event::Exited,
    ];

    /// Whether a missing marker is expected (supermin has no "modules
    /// loaded" line; only x86 firmware prints a SeaBIOS banner).
    fn optional(self) -> bool {
        matches!(self, Event::Firmware | Event::ModulesLoaded)
    }

    /// The kebab-case name used in JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Event::Launch => "launch",
            Event::QemuStarted => "qemu-started",
            Event::Firmware => "firmware",
            Event::KernelStarted => "kernel-started",
            Event::InitStarted => "init-started",
            Event::ModulesLoaded => "modules-loaded",
            Event::RootMounted => "root-mounted",
            Event::LibguestfsInit => "libguestfs-init",
            Event::UdevSettled => "udev-settled",
            Event::DaemonReady => "daemon-ready",
            Event::Exited => "exited",
        }
    }
}

/// A stage: the stretch between two events.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StageDef {
    /// Name used in JSON.
    pub(crate) name: &'static str,
    /// What people read in the table.
    pub(crate) label: &'static str,
    /// Where it starts.
    pub(crate) from: Event,
    /// Where it ends.
    pub(crate) to: Event,
    /// A part of the stage before it, not a stage of its own (not counted
    /// in sums).
    pub(crate) detail: bool,
}

/// The stages reported, in order: the boot chain the issue names (qemu
/// start, kernel, our init, root mounted, libguestfs /init, udev settled,
/// daemon ready), plus setup before qemu and shutdown after.
pub(crate) const STAGES: [StageDef; 9] = [
    StageDef {
        name: "setup",
        label: "libguestfs setup",
        from: Event::Launch,
        to: Event::QemuStarted,
        detail: false,
    },
    StageDef {
        name: "firmware",
        label: "qemu, firmware, kernel load",
        from: Event::QemuStarted,
        to: Event::KernelStarted,
        detail: false,
    },
    StageDef {
        name: "kernel",
        label: "kernel boot to init",
        from: Event::KernelStarted,
        to: Event::InitStarted,
        detail: false,
    },
    StageDef {
        name: "appliance-init",
        label: "init: modules, root mount",
        from: Event::InitStarted,
        to: Event::RootMounted,
        detail: false,
    },
    StageDef {
        name: "init-modules",
        label: "  of which loading modules",
        from: Event::InitStarted,
        to: Event::ModulesLoaded,
        detail: true,
    },
    StageDef {
        name: "switch-root",
        label: "switch root to /init",
        from: Event::RootMounted,
        to: Event::LibguestfsInit,
        detail: false,
    },
    StageDef {
        name: "udev",
        label: "/init until udev settled",
        from: Event::LibguestfsInit,
        to: Event::UdevSettled,
        detail: false,
    },
    StageDef {
        name: "daemon",
        label: "rest of /init, daemon up",
        from: Event::UdevSettled,
        to: Event::DaemonReady,
        detail: false,
    },
    StageDef {
        name: "shutdown",
        label: "shutdown",
        from: Event::DaemonReady,
        to: Event::Exited,
        detail: false,
    },
];

/// When one event happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct EventTime {
    /// Which event.
    pub(crate) event: Event,
    /// Seconds since launch; `None` when its marker was not found.
    pub(crate) at_s: Option<f64>,
}

/// How long one stage took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTime {
    /// [`StageDef::name`].
    pub(crate) stage: &'static str,
    /// [`StageDef::label`], trimmed.
    pub(crate) label: &'static str,
    /// [`StageDef::from`].
    pub(crate) from: Event,
    /// [`StageDef::to`].
    pub(crate) to: Event,
    /// A part of the previous stage (not summed).
    pub(crate) detail: bool,
    /// Seconds; `None` when either end is missing.
    pub seconds: Option<f64>,
}

/// One launch split into stages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageReport {
    /// Every event, in boot order.
    pub(crate) events: Vec<EventTime>,
    /// Every stage of [`STAGES`], in order.
    pub stages: Vec<StageTime>,
    /// Launch to exit, seconds.
    pub(crate) total_s: Option<f64>,
    /// Events whose marker was expected but not found.
    pub(crate) missing: Vec<Event>,
    /// qemu's accelerator, from the command line libguestfs printed
    /// (`-machine accel=tcg`).
    pub(crate) accel: Option<String>,
}

/// Read a console log in the format [`render_log`] writes: the lines and
/// the exit time (`# exited: SECONDS`), if recorded.
///
/// Errors: [`StageError::BadLine`] for a line that is neither.
pub fn parse_log(text: &str) -> Result<(Vec<ConsoleLine>, Option<f64>), StageError> {
    let mut lines = Vec::new();
    let mut exited = None;
    for (n, line) in text.lines().enumerate() {
        if let Some(comment) = line.strip_prefix('#') {
            if let Some(v) = comment.trim().strip_prefix("exited:") {
                exited = v.split_whitespace().next().and_then(|s| s.parse::<f64>().ok());
            }
            continue;
        }
        let trimmed = line.trim_start();
        let (secs, rest) = trimmed.split_once(' ').unwrap_or((trimmed, ""));
        match secs.parse::<f64>() {
            Ok(at) if at.is_finite() && at >= 0.0 => lines.push(ConsoleLine { at, text: rest.to_string() }),
            _ => {
                return Err(StageError::BadLine { line: n + 1, found: line.chars().take(40).collect() });
            }
        }
    }
    Ok((lines, exited))
}

/// Write `lines` in the console log format, after `header` comment lines,
/// ending with `# exited: SECONDS` when known.
pub(crate) fn render_log(header: &[String], lines: &[ConsoleLine], exited: Option<f64>) -> String {
    let mut out = String::new();
    for h in header {
        for l in h.lines() {
            out.push_str(&format!("# {l}\n"));
        }
    }
    for l in lines {
        out.push_str(&format!("{:9.3} {}\n", l.at, l.text));
    }
    if let Some(e) = exited {
        out.push_str(&format!("# exited: {e:.3}\n"));
    }
    out
}

/// The printk stamp of a kernel line (`[    4.435263] Run /init ...`):
/// the first `[`, spaces, `SECONDS.MICROS`, `]` in the line (an escape
/// sequence may come first, e.g. the console reset before "Linux version").
pub(crate) fn kernel_stamp(text: &str) -> Option<f64> {
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let after = &rest[open + 1..];
        if let Some(close) = after.find(']') {
            let inner = after[..close].trim_start_matches(' ');
            let (whole, frac) = inner.split_once('.').unwrap_or(("", ""));
            if !whole.is_empty()
                && frac.len() == 6
                && whole.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
            {
                return inner.parse().ok();
            }
        }
        rest = after;
    }
    None
}

/// Is this the first line of the qemu command line libguestfs prints
/// (`/usr/bin/qemu-system-x86_64 \`), or libvirt's launch message?
fn is_qemu_start(text: &str) -> bool {
    let t = text.trim();
    (t.starts_with('/') && t.contains("qemu") && t.ends_with('\\'))
        || t.starts_with("-nodefaults")
        || t.contains("libguestfs: launch libvirt guest")
}

fn is_init_start(t: &str) -> bool {
    t.contains("init: guestfs-appliance-init ")
        || t.contains("supermin: mounting /proc")
        || t.contains("supermin: ext2 mini initrd starting up")
}

fn is_modules_loaded(t: &str) -> bool {
    t.starts_with("init: ") && t.contains(" modules loaded, ")
}

fn is_root_mounted(t: &str) -> bool {
    t.contains("init: deleting initramfs files") || t.contains("supermin: deleting initramfs files")
}

/// Find the events in `lines` (module docs) and time the stages; `exited`
/// is the process's exit time, if known.
pub fn analyse(lines: &[ConsoleLine], exited: Option<f64>) -> StageReport {
    // Each marker is looked for after the previous one found, so a later
    // stage's text can never match early (and vice versa).
    let at = |pred: &dyn Fn(&str) -> bool, from: &mut usize| -> Option<(usize, f64)> {
        let found = lines.iter().enumerate().skip(*from).find(|(_, l)| pred(&l.text))?;
        *from = found.0;
        Some((found.0, found.1.at))
    };
    let mut cursor = 0usize;
    let qemu = at(&is_qemu_start, &mut cursor);
    let firmware = at(&|t: &str| t.contains("SeaBIOS (version"), &mut cursor.clone());
    let mut after_qemu = cursor;
    let init = at(&is_init_start, &mut after_qemu);
    // Kernel start from the printk stamps of the lines before the init.
    let kernel_end = init.map_or(lines.len(), |(i, _)| i);
    let kernel = lines[cursor.min(kernel_end)..kernel_end]
        .iter()
        .filter_map(|l| kernel_stamp(&l.text).map(|k| l.at - k))
        .min_by(f64::total_cmp);
    let mut c = init.map_or(cursor, |(i, _)| i);
    let modules = at(&is_modules_loaded, &mut c.clone());
    let root = at(&is_root_mounted, &mut c);
    let lg_init = at(&|t: &str| t.contains("Starting /init script"), &mut c);
    let settle = at(&|t: &str| t.starts_with("+ udevadm settle"), &mut c.clone())
        .and_then(|(i, _)| lines.iter().skip(i + 1).find(|l| l.text.starts_with("+ ")).map(|l| l.at));
    let ready = at(&|t: &str| t.contains("libguestfs: appliance is up"), &mut c);
    let accel = lines
        .iter()
        .find_map(|l| {
            l.text.split_whitespace().find_map(|w| w.split(',').find_map(|p| p.strip_prefix("accel=")))
        })
        .map(str::to_string);

    let time = |e: Event| -> Option<f64> {
        match e {
            Event::Launch => Some(0.0),
            Event::QemuStarted => qemu.map(|x| x.1),
            Event::Firmware => firmware.map(|x| x.1),
            Event::KernelStarted => kernel,
            Event::InitStarted => init.map(|x| x.1),
            Event::ModulesLoaded => modules.map(|x| x.1),
            Event::RootMounted => root.map(|x| x.1),
            Event::LibguestfsInit => lg_init.map(|x| x.1),
            Event::UdevSettled => settle,
            Event::DaemonReady => ready.map(|x| x.1),
            Event::Exited => exited,
        }
    };
    let events: Vec<EventTime> = Event::ALL.iter().map(|&e| EventTime { event: e, at_s: time(e) }).collect();
    let missing =
        events.iter().filter(|e| e.at_s.is_none() && !e.event.optional()).map(|e| e.event).collect();
    let stages = STAGES
        .iter()
        .map(|s| StageTime {
            stage: s.name,
            label: s.label.trim(),
            from: s.from,
            to: s.to,
            detail: s.detail,
            seconds: time(s.from).zip(time(s.to)).map(|(a, b)| b - a),
        })
        .collect();
    StageReport { events, stages, total_s: exited, missing, accel }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture(name: &str) -> (Vec<ConsoleLine>, Option<f64>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bench").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        parse_log(&text).unwrap()
    }

    fn event(r: &StageReport, e: Event) -> Option<f64> {
        r.events.iter().find(|x| x.event == e).unwrap().at_s
    }

    fn stage(r: &StageReport, name: &str) -> Option<f64> {
        r.stages.iter().find(|s| s.stage == name).unwrap().seconds
    }

    /// The events of a real launch come in boot order, and the main stages
    /// add up to the whole launch.
    fn check_consistent(r: &StageReport) {
        let times: Vec<f64> = r.events.iter().filter_map(|e| e.at_s).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "events out of order: {:#?}", r.events);
        let sum: f64 = r.stages.iter().filter(|s| !s.detail).map(|s| s.seconds.unwrap()).sum();
        assert!((sum - r.total_s.unwrap()).abs() < 1e-6, "stages sum to {sum}, launch took {:?}", r.total_s);
        assert_eq!(r.accel.as_deref(), Some("tcg"));
    }

    #[test]
    fn fixed_appliance_console_has_every_stage() {
        let (lines, exited) = fixture("fixed-console.log");
        let r = analyse(&lines, exited);
        assert!(r.missing.is_empty(), "missing {:?}", r.missing);
        check_consistent(&r);
        // Our init's own lines mark its start, the end of module loading
        // and the root mount.
        let init = event(&r, Event::InitStarted).unwrap();
        let line = lines.iter().find(|l| l.at == init).unwrap();
        assert!(line.text.starts_with("init: guestfs-appliance-init "), "{line:?}");
        assert!(stage(&r, "init-modules").unwrap() < stage(&r, "appliance-init").unwrap());
        // The kernel's early lines arrive in one burst when the console is
        // enabled; its start is no later than that burst, after the
        // firmware. (In this boot the early stamps read 0.000000 and the
        // clock restarts at tsc-early, so the burst is the tightest bound.)
        let burst = lines.iter().find(|l| l.text.contains("Linux version")).unwrap().at;
        let kernel = event(&r, Event::KernelStarted).unwrap();
        assert!(kernel <= burst && kernel > event(&r, Event::Firmware).unwrap(), "{kernel} vs burst {burst}");
    }

    #[test]
    fn supermin_appliance_console_has_every_stage_but_ours() {
        let (lines, exited) = fixture("supermin-console.log");
        let r = analyse(&lines, exited);
        assert!(r.missing.is_empty(), "missing {:?}", r.missing);
        check_consistent(&r);
        // supermin's init has no "modules loaded" line: that detail is
        // absent, not wrong.
        assert_eq!(event(&r, Event::ModulesLoaded), None);
        assert_eq!(stage(&r, "init-modules"), None);
        let init = event(&r, Event::InitStarted).unwrap();
        assert!(lines.iter().any(|l| l.at == init && l.text.starts_with("supermin: ")));
    }

    #[test]
    fn kernel_stamps_are_found_after_escapes_and_not_in_device_names() {
        assert_eq!(kernel_stamp("[    4.435263] Run /init as init process"), Some(4.435263));
        assert_eq!(kernel_stamp("\\x1bc\\x1b[?7l\\x1b[2J[    0.000000] Linux version 6.1"), Some(0.0));
        assert_eq!(kernel_stamp("[  123.000001] sd 2:0:0:0: [sda] Attached"), Some(123.000001));
        assert_eq!(kernel_stamp("sd 2:0:0:0: [sda] Attached SCSI disk"), None);
        assert_eq!(kernel_stamp("init: exec /init"), None);
        assert_eq!(kernel_stamp("[1.5] short fraction"), None);
    }

    #[test]
    fn kernel_start_is_the_smallest_arrival_minus_stamp() {
        let line = |at: f64, text: &str| ConsoleLine { at, text: text.into() };
        let lines = vec![
            line(0.2, "/usr/bin/qemu-system-x86_64 \\"),
            line(0.3, "    -machine accel=tcg,graphics=off \\"),
            // The replayed burst: stamps 0.0 and 0.6 arrive together.
            line(9.9, "[    0.000000] Linux version"),
            line(9.9, "[    0.600000] printk: console [ttyS0] enabled"),
            line(13.7, "[    4.400000] Run /init as init process"),
            line(13.9, "init: guestfs-appliance-init 0.1.0; cmdline: x"),
            // After the init: a drifting clock must not count.
            line(20.0, "[   19.000000] late line"),
        ];
        let r = analyse(&lines, Some(30.0));
        assert!((event(&r, Event::KernelStarted).unwrap() - 9.3).abs() < 1e-9, "{r:#?}");
        assert_eq!(r.accel.as_deref(), Some("tcg"));
        assert!(r.missing.contains(&Event::RootMounted));
        assert_eq!(stage(&r, "switch-root"), None);
    }

    #[test]
    fn markers_are_found_in_boot_order_only() {
        let line = |at: f64, text: &str| ConsoleLine { at, text: text.into() };
        // A daemon-ready line before the qemu start (impossible in a real
        // launch) must not be taken; the one after is.
        let lines = vec![
            line(0.1, "libguestfs: appliance is up"),
            line(0.2, "/usr/bin/qemu-system-x86_64 \\"),
            line(1.0, "init: guestfs-appliance-init 0.1.0"),
            line(1.5, "init: 3 modules loaded, 0 not loaded"),
            line(2.0, "init: deleting initramfs files"),
            line(3.0, "Starting /init script ..."),
            line(4.0, "+ udevadm settle --timeout=600"),
            line(5.0, "[    4.000000] sd 2:0:0:0: Attached scsi generic sg0 type 0"),
            line(6.0, "+ shopt -s nullglob"),
            line(7.0, "libguestfs: appliance is up"),
        ];
        let r = analyse(&lines, Some(8.0));
        assert_eq!(event(&r, Event::DaemonReady), Some(7.0));
        assert_eq!(event(&r, Event::UdevSettled), Some(6.0));
        assert_eq!(stage(&r, "init-modules"), Some(0.5));
        assert_eq!(stage(&r, "shutdown"), Some(1.0));
    }

    #[test]
    fn event_names_are_their_json_names() {
        for e in Event::ALL {
            assert_eq!(serde_json::to_value(e).unwrap(), e.name());
        }
    }

    #[test]
    fn log_format_round_trips() {
        let lines = vec![
            ConsoleLine { at: 0.106, text: "libguestfs: launch: program=guestfish".into() },
            ConsoleLine { at: 12.5, text: "  indented # not a comment".into() },
            ConsoleLine { at: 13.0, text: String::new() },
        ];
        let text = render_log(&["fixed appliance /x".into(), "two\nlines".into()], &lines, Some(45.037));
        assert!(text.starts_with("# fixed appliance /x\n# two\n# lines\n"), "{text}");
        let (back, exited) = parse_log(&text).unwrap();
        assert_eq!(back, lines);
        assert_eq!(exited, Some(45.037));
    }

    #[test]
    fn bad_log_lines_are_refused_with_their_number() {
        let err = parse_log("# ok\n 1.0 fine\nnot a time\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "console log line 3: expected `SECONDS TEXT` or a `#` comment, found \"not a time\""
        );
    }
}
