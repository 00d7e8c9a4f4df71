//! Issue 11 item 4: `watch` rebuilds once per burst of changes to what the
//! appliance is built from, logs one line per decision, and exits 0 on
//! SIGTERM. The fixture root (see `check.rs`) has its own dpkg status file,
//! which the test rewrites the way dpkg does (new file, rename).

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::check::{set_field, version_of, Fixture};
use crate::util::*;

/// The lines of a running `watch`, read on a thread.
struct Watch {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    /// The next line within `secs`, or a panic listing what was seen.
    fn next_line(&mut self, secs: u64) -> String {
        match self.lines.recv_timeout(Duration::from_secs(secs)) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(e) => {
                panic!("watch printed no line within {secs} s ({e}); so far:\n{}", self.seen.join("\n"))
            }
        }
    }

    /// Read lines until one contains `what`; return the lines read.
    fn until(&mut self, what: &str, secs: u64) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            let line = self.next_line(secs);
            let done = line.contains(what);
            got.push(line);
            if done {
                return got;
            }
        }
    }

    /// Lines printed within `secs` of quiet.
    fn quiet_for(&mut self, secs: u64) -> Vec<String> {
        let mut got = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(secs)) {
            self.seen.push(line.clone());
            got.push(line);
        }
        got
    }
}

#[test]
fn issue11_watch_rebuilds_once_per_burst_and_stops_on_sigterm() {
    if !crate::build::prerequisites_pub() {
        return;
    }
    let Some(fx) = Fixture::new() else { return };
    // Buildable: an empty modules.dep puts no modules in the initrd; the
    // fixture's dpkg info is the host's (a symlink): not for the image.
    std::fs::write(fx.root.join("lib/modules").join(&fx.kernel_version).join("modules.dep"), "").unwrap();
    std::fs::write(fx.input.join("excludefiles"), "-/var/lib/dpkg/*\n").unwrap();
    let cwd = fx.dir.parent().unwrap();
    let mut build = vec!["build".to_string(), "-q".into(), "--size".into(), "64M".into()];
    build.extend(fx.args());
    ga(cwd, &build).success();

    let mut child = Command::new(bin("guestfs-appliance"))
        .args(["-v", "watch", "--debounce", "1"])
        .arg(&fx.dir)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stderr = std::io::BufReader::new(child.stderr.take().expect("piped stderr"));
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut watch = Watch { child, lines: rx, seen: Vec::new() };

    let start = watch.until("watch: watching", 120);
    assert!(
        start.iter().any(|l| l.contains("watch: start;") && l.contains("fresh, nothing to do")),
        "{start:#?}"
    );

    // One change in the closure (bash upgraded): one rebuild, naming it.
    let old = version_of(&std::fs::read_to_string(fx.root.join("var/lib/dpkg/status")).unwrap(), "bash");
    fx.edit_status(|s| set_field(s, "bash", "Version", &format!("{old}+watch1")));
    let lines = watch.until("watch: watching", 120);
    let rebuilt: Vec<_> = lines.iter().filter(|l| l.contains("rebuilt:")).collect();
    assert_eq!(rebuilt.len(), 1, "{lines:#?}");
    assert!(rebuilt[0].contains("package upgraded: bash"), "{lines:#?}");
    let after = watch.quiet_for(3);
    assert!(after.is_empty(), "one change gave more than one decision: {after:#?}");

    // A burst of 100 rewrites (an apt run of 100 packages): one rebuild.
    for i in 0..100 {
        fx.edit_status(|s| set_field(s, "bash", "Version", &format!("{old}+burst{i}")));
    }
    let lines = watch.until("watch: watching", 120);
    let rebuilt: Vec<_> = lines.iter().filter(|l| l.contains("rebuilt:")).collect();
    assert_eq!(rebuilt.len(), 1, "{lines:#?}");
    assert!(rebuilt[0].contains("+burst99"), "not the final state: {lines:#?}");
    let after = watch.quiet_for(3);
    assert!(after.is_empty(), "one burst gave more than one decision: {after:#?}");
    let run = ga(cwd, ["check", fx.dir.to_str().unwrap()]);
    assert_eq!(run.code(), Some(0), "the rebuilt appliance is fresh: {}", run.shown_all());

    // SIGTERM: a clean exit 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watch.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = watch.child.wait().unwrap();
    let rest = watch.quiet_for(2);
    assert_eq!(status.code(), Some(0), "{rest:#?}\n{:#?}", watch.seen);
    assert!(rest.iter().any(|l| l.contains("watch: stopping (SIGTERM)")), "{rest:#?}");
}
