//! The only place that runs external programs.
//!
//! Commands are given as an argv (never a shell string). A failure reports
//! the full argv, the exit status and the last kilobyte of stderr, so the
//! user sees what we ran and why it failed without re-running it.
//!
//! Two ways to run: [`output`] for quick tools whose stdout we want, and
//! [`Timed`] for long-running ones, with a deadline, a cancel flag, the
//! child in its own process group (so a timeout also stops what it started,
//! e.g. qemu) and every line it prints with the time it arrived.
//! [`Timed::run`] runs to the end (libguestfs launches for `bench`);
//! [`Timed::watch`] stops the program as soon as a line shows what the
//! caller waits for (`status --probe`'s test boots, which wait for the
//! guest's init). A [`Running`] list lets a watchdog kill what is still
//! running before the process exits.
//!
//! A third, [`Spawned`], is for our own binary run as a child in the
//! foreground of a command (`build --hook`'s bounded build, `watch`'s
//! rebuilds): output passed through or stderr kept, and stopped on a
//! deadline or on request with SIGTERM, then SIGKILL after a grace.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How much of a failed command's stderr is kept in the error.
const STDERR_TAIL: usize = 1024;

/// A failure to run, or a non-zero exit of, an external command.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("could not run `{argv}`: {source} (is it installed and on PATH?)")]
    Spawn {
        /// The command line, for display.
        argv: String,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("`{argv}` failed ({status}){}", tail_suffix(.stderr_tail))]
    Failed {
        /// The command line, for display.
        argv: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of what it printed on stderr.
        stderr_tail: String,
    },
    /// The program ran past its deadline and was stopped.
    #[error("`{argv}` did not finish within {} and was stopped{}", seconds(*.after), tail_suffix(.stderr_tail))]
    TimedOut {
        /// The command line, for display.
        argv: String,
        /// The deadline it ran into.
        after: Duration,
        /// The end of what it printed on stderr.
        stderr_tail: String,
    },
    /// The caller's cancel flag was raised (e.g. by Ctrl-C) and the program
    /// was stopped.
    #[error("`{argv}` was stopped: interrupted")]
    Cancelled {
        /// The command line, for display.
        argv: String,
    },
}

/// A deadline for people: `3 s`, `0.5 s`, `1.25 s` (milliseconds at most;
/// a sub-second deadline is never shown as `0 s`).
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        return format!("{} s", d.as_secs());
    }
    let text = format!("{:.3}", d.as_secs_f64());
    let text = text.trim_end_matches('0').trim_end_matches('.');
    // Below a millisecond, round up: never read as no time at all.
    if text == "0" {
        return "0.001 s".into();
    }
    format!("{text} s")
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

/// Render an argv for messages, quoting words that need it.
pub(crate) fn display_argv<S: AsRef<OsStr>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| {
            let s = a.as_ref().to_string_lossy();
            if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
                format!("'{}'", s.replace('\'', "'\\''"))
            } else {
                s.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `name` on `PATH` (then /usr/sbin, /sbin, where a non-root PATH may not
/// look), as the program a command line naming it would run.
pub(crate) fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Run `argv` with stdin closed and return its stdout.
///
/// Errors: [`ProcessError::Spawn`] when it cannot start,
/// [`ProcessError::Failed`] on a non-zero exit (with the stderr tail).
pub(crate) fn output<S: AsRef<OsStr>>(argv: &[S]) -> Result<Vec<u8>, ProcessError> {
    run_captured(argv, None)
}

/// [`output`] for a program that prints megabytes (`rpm -qa` with every
/// file): its stdout goes to an in-memory file (a memfd) read back once it
/// has exited, so it never waits for us to empty a pipe and neither of us
/// is woken for every few KiB it writes, which on a busy machine cost
/// about a tenth of such a run.
///
/// Errors: as [`output`]; [`ProcessError::Spawn`] also when the memfd
/// cannot be made or read.
pub(crate) fn bulk_output<S: AsRef<OsStr>>(argv: &[S]) -> Result<Vec<u8>, ProcessError> {
    let spawn_error = |source: std::io::Error| ProcessError::Spawn { argv: display_argv(argv), source };
    let fd = nix::sys::memfd::memfd_create(
        c"guestfs-appliance-output",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|e| spawn_error(e.into()))?;
    let mut file = std::fs::File::from(fd);
    run_captured(argv, Some(file.try_clone().map_err(spawn_error)?))?;
    let mut out = Vec::new();
    std::io::Seek::rewind(&mut file).and_then(|()| file.read_to_end(&mut out)).map_err(spawn_error)?;
    Ok(out)
}

/// Runs `argv` with stdin closed and `LANG=C`; its stdout into `stdout`
/// (then nothing is returned) or returned.
fn run_captured<S: AsRef<OsStr>>(argv: &[S], stdout: Option<std::fs::File>) -> Result<Vec<u8>, ProcessError> {
    let shown = display_argv(argv);
    let Some((program, args)) = argv.split_first() else {
        return Err(ProcessError::Spawn {
            argv: shown,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
        });
    };
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).env("LANG", "C");
    if let Some(file) = stdout {
        cmd.stdout(file);
    }
    let out = cmd.output().map_err(|source| ProcessError::Spawn { argv: shown.clone(), source })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(ProcessError::Failed {
        argv: shown,
        status: out.status,
        stderr_tail: tail(&String::from_utf8_lossy(&out.stderr)),
    })
}

/// The last [`STDERR_TAIL`] bytes of `text`, trailing whitespace removed.
fn tail(text: &str) -> String {
    let trimmed = text.trim_end();
    let start = trimmed.len().saturating_sub(STDERR_TAIL);
    let start = (start..trimmed.len()).find(|i| trimmed.is_char_boundary(*i)).unwrap_or(0);
    trimmed[start..].to_string()
}

/// How much of a timed command's output is kept; past it, lines are dropped
/// (a runaway program cannot eat our memory).
const MAX_CAPTURE: usize = 32 << 20;

/// After the program exits, how long we still read output that a process it
/// left behind (holding the pipes open) may print.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How long a stopped program gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// Which of the program's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line a program printed (without its newline; a trailing `\r` is
/// dropped too), and when it arrived, counted from the spawn.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TimedLine {
    /// Arrival time since the program was started.
    pub(crate) at: Duration,
    /// The stream it came from.
    pub(crate) stream: Stream,
    /// The text, decoded lossily as UTF-8.
    pub(crate) text: String,
}

/// A program run under a deadline (builder). The program gets stdin from
/// /dev/null, `LANG=C`, and (unless [`Timed::share_process_group`]) its own
/// process group.
#[derive(Debug, Clone)]
pub(crate) struct Timed {
    argv: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    timeout: Duration,
    cancel: Option<Arc<AtomicBool>>,
    own_group: bool,
    running: Option<&'static Running>,
}

/// What a timed program did: it ran to its end (any exit status).
#[derive(Debug, Clone)]
pub(crate) struct TimedOutput {
    /// The command line, for messages.
    pub(crate) argv: String,
    /// Its exit status.
    pub(crate) status: ExitStatus,
    /// When it was spawned.
    pub(crate) started: Instant,
    /// From spawn to exit (as seen by a thread blocked in `wait`, so the
    /// resolution is the scheduler's, not a polling interval).
    pub(crate) elapsed: Duration,
    /// Everything it printed, in arrival order.
    pub(crate) lines: Vec<TimedLine>,
}

impl TimedOutput {
    /// The lines of one stream.
    pub(crate) fn stream(&self, stream: Stream) -> impl Iterator<Item = &TimedLine> {
        self.lines.iter().filter(move |l| l.stream == stream)
    }

    /// The last kilobyte of stderr, as [`ProcessError::Failed`] shows it.
    #[cfg(test)]
    pub(crate) fn stderr_tail(&self) -> String {
        let text: Vec<&str> = self.stream(Stream::Stderr).map(|l| l.text.as_str()).collect();
        tail(&text.join("\n"))
    }
}

/// How a watched program's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchEnd {
    /// A line showed what the caller waited for; the program was stopped.
    Matched,
    /// The program exited first, with this status.
    Exited(ExitStatus),
    /// The deadline came first; the program was stopped.
    TimedOut,
}

/// What a watched program did ([`Timed::watch`]).
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    /// Why it ended.
    pub(crate) end: WatchEnd,
    /// From spawn to the end: the match, the exit or the deadline.
    pub(crate) elapsed: Duration,
    /// What it printed until then, in arrival order (nothing printed
    /// while it was being stopped).
    pub(crate) lines: Vec<TimedLine>,
}

/// Programs that [`Timed`] runs have running now (those that asked with
/// [`Timed::track_in`]), for a watchdog that must stop them before the
/// process exits, when no destructor runs.
#[derive(Debug, Default)]
pub(crate) struct Running(Mutex<Vec<(i32, bool)>>);

impl Running {
    /// An empty list (for a `static`).
    pub(crate) const fn new() -> Self {
        Running(Mutex::new(Vec::new()))
    }

    /// SIGKILL every program on the list (its process group, when it has
    /// its own).
    pub(crate) fn kill_all(&self) {
        use nix::sys::signal::{kill, killpg, Signal};
        let pids = self.0.lock().map(|p| p.clone()).unwrap_or_default();
        for (pid, own_group) in pids {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = if own_group { killpg(pid, Signal::SIGKILL) } else { kill(pid, Signal::SIGKILL) };
        }
    }

    /// Whether nothing is running.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.lock().map(|p| p.is_empty()).unwrap_or(true)
    }

    fn add(&self, pid: i32, own_group: bool) {
        if let Ok(mut pids) = self.0.lock() {
            pids.push((pid, own_group));
        }
    }

    fn remove(&self, pid: i32) {
        if let Ok(mut pids) = self.0.lock() {
            pids.retain(|(p, _)| *p != pid);
        }
    }
}

/// What the reader and waiter threads report.
enum Event {
    Data(Stream, Vec<u8>, Instant),
    Eof,
    Exited(std::io::Result<ExitStatus>, Instant),
}

/// How the run loop ended.
enum Ended {
    Exited(ExitStatus, Instant),
    Matched(Instant),
    TimedOut,
    Cancelled,
}

/// The started program, stopped (SIGKILL) if the run loop is left by a
/// panic; disarmed once the loop has stopped or seen the program exit.
struct Started {
    pid: nix::unistd::Pid,
    own_group: bool,
    armed: bool,
    running: Option<&'static Running>,
}

impl Started {
    /// SIGTERM the program (its group, when it has one), give it
    /// [`KILL_GRACE`] to exit, then SIGKILL it. The group outlives its
    /// leader while members remain, so this also reaches what the program
    /// started (qemu under guestfish).
    fn stop(&mut self, rx: &mpsc::Receiver<Event>, leader_exited: bool) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + KILL_GRACE;
        let mut exited = leader_exited;
        while !exited {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(Event::Exited(..)) => exited = true,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // Whatever is left of the group (or all of it, if SIGTERM was
        // ignored).
        self.signal(nix::sys::signal::Signal::SIGKILL);
        self.armed = false;
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = if self.own_group {
            nix::sys::signal::killpg(self.pid, signal)
        } else {
            nix::sys::signal::kill(self.pid, signal)
        };
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.armed {
            self.signal(nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(running) = self.running {
            running.remove(self.pid.as_raw());
        }
    }
}

impl Timed {
    /// `argv` (program first), stopped after `timeout`.
    pub(crate) fn new<S: AsRef<OsStr>>(argv: &[S], timeout: Duration) -> Self {
        Timed {
            argv: argv.iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            timeout,
            cancel: None,
            own_group: true,
            running: None,
        }
    }

    /// Set `key=value` in the program's environment.
    pub(crate) fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Remove `key` from the program's environment.
    pub(crate) fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    /// Stop the program (its whole process group) when `flag` becomes true.
    pub(crate) fn cancel_on(mut self, flag: Arc<AtomicBool>) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Leave the program in our process group, so that a terminal's Ctrl-C
    /// reaches it as it reaches us: for a program that starts nothing of
    /// its own and must not outlive us when we die of SIGINT without a
    /// handler (qemu for `status --probe`). Stopping it then signals the
    /// program alone.
    pub(crate) fn share_process_group(mut self) -> Self {
        self.own_group = false;
        self
    }

    /// Keep the program on `running` while it runs (see [`Running`]).
    pub(crate) fn track_in(mut self, running: &'static Running) -> Self {
        self.running = Some(running);
        self
    }

    /// The command line, for messages.
    pub(crate) fn display(&self) -> String {
        display_argv(&self.argv)
    }

    /// Run the program to its end and return what it printed, whatever its
    /// exit status: the caller judges a failure, since it knows which lines
    /// explain it ([`TimedOutput::stderr_tail`] is the generic answer).
    ///
    /// Errors: [`ProcessError::Spawn`]; [`ProcessError::TimedOut`] and
    /// [`ProcessError::Cancelled`] after stopping the program's process
    /// group (SIGTERM, then SIGKILL).
    pub(crate) fn run(&self) -> Result<TimedOutput, ProcessError> {
        let shown = self.display();
        let (ended, started, lines) = self.execute(None)?;
        match ended {
            Ended::Exited(status, at) => {
                Ok(TimedOutput { argv: shown, status, started, elapsed: at - started, lines: lines.finish() })
            }
            Ended::TimedOut => {
                let lines = lines.finish();
                let stderr: Vec<&str> =
                    lines.iter().filter(|l| l.stream == Stream::Stderr).map(|l| l.text.as_str()).collect();
                Err(ProcessError::TimedOut {
                    argv: shown,
                    after: self.timeout,
                    stderr_tail: tail(&stderr.join("\n")),
                })
            }
            Ended::Cancelled => Err(ProcessError::Cancelled { argv: shown }),
            Ended::Matched(_) => unreachable!("run() watches for no line"),
        }
    }

    /// Run the program until a line it prints (on either stream; the
    /// unterminated end of one counts too) satisfies `until`, it exits, or
    /// the deadline passes, whichever comes first; then stop it (SIGTERM,
    /// then SIGKILL) and say which it was. A deadline is an outcome here,
    /// not an error: the caller wants the output either way.
    ///
    /// Errors: [`ProcessError::Spawn`]; [`ProcessError::Cancelled`] when the
    /// cancel flag was raised.
    pub(crate) fn watch(&self, until: impl Fn(&str) -> bool) -> Result<Watched, ProcessError> {
        let shown = self.display();
        let (ended, started, lines) = self.execute(Some(&until))?;
        let (end, at) = match ended {
            Ended::Matched(at) => (WatchEnd::Matched, at),
            Ended::Exited(status, at) => (WatchEnd::Exited(status), at),
            Ended::TimedOut => (WatchEnd::TimedOut, started + self.timeout),
            Ended::Cancelled => return Err(ProcessError::Cancelled { argv: shown }),
        };
        Ok(Watched { end, elapsed: at.saturating_duration_since(started), lines: lines.finish() })
    }

    /// Spawn the program and collect its lines until it exits, `until`
    /// matches, the deadline passes or the cancel flag is raised; stop it
    /// in all but the first case.
    fn execute(
        &self,
        until: Option<&dyn Fn(&str) -> bool>,
    ) -> Result<(Ended, Instant, LineCollector), ProcessError> {
        let shown = self.display();
        let Some((program, args)) = self.argv.split_first() else {
            return Err(ProcessError::Spawn {
                argv: shown,
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"),
            });
        };
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).env("LANG", "C");
        if self.own_group {
            cmd.process_group(0);
        }
        for (key, value) in &self.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn { argv: shown.clone(), source })?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        if let Some(running) = self.running {
            running.add(pid.as_raw(), self.own_group);
        }
        let mut guard = Started { pid, own_group: self.own_group, armed: true, running: self.running };
        let (tx, rx) = mpsc::channel::<Event>();
        let pipes: [(Stream, Option<Box<dyn Read + Send>>); 2] = [
            (Stream::Stdout, child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
            (Stream::Stderr, child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>)),
        ];
        for (stream, pipe) in pipes {
            let (tx, Some(mut pipe)) = (tx.clone(), pipe) else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tx.send(Event::Data(stream, buf[..n].to_vec(), Instant::now())).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tx.send(Event::Eof);
            });
        }
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(Event::Exited(status, Instant::now()));
        });

        let mut lines = LineCollector::new(started);
        let deadline = started + self.timeout;
        let mut open_pipes = 2;
        let mut exited: Option<(ExitStatus, Instant)> = None;
        let ended = loop {
            let now = Instant::now();
            if self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                break Ended::Cancelled;
            }
            if exited.is_none() && now >= deadline {
                break Ended::TimedOut;
            }
            if let Some((status, at)) = exited {
                if open_pipes == 0 || now >= at + DRAIN_GRACE {
                    break Ended::Exited(status, at);
                }
            }
            let wait = deadline
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            match rx.recv_timeout(wait) {
                Ok(Event::Data(stream, data, at)) => {
                    lines.push(stream, &data, at);
                    if until.is_some_and(|f| lines.new_match(f)) {
                        break Ended::Matched(Instant::now());
                    }
                }
                Ok(Event::Eof) => open_pipes -= 1,
                Ok(Event::Exited(Ok(status), at)) => exited = Some((status, at)),
                Ok(Event::Exited(Err(source), _)) => {
                    return Err(ProcessError::Spawn { argv: shown, source });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // Every sender is gone: the waiter has reported (or died).
                Err(mpsc::RecvTimeoutError::Disconnected) => match exited {
                    None => break Ended::TimedOut,
                    Some((status, at)) => break Ended::Exited(status, at),
                },
            }
        };
        match ended {
            Ended::Exited(..) => guard.armed = false,
            _ => guard.stop(&rx, exited.is_some()),
        }
        Ok((ended, started, lines))
    }
}

/// Splits the chunks of both streams into timed lines.
struct LineCollector {
    started: Instant,
    partial: [Vec<u8>; 2],
    lines: Vec<TimedLine>,
    kept: usize,
    /// Lines up to here were shown to [`LineCollector::new_match`].
    checked: usize,
}

impl LineCollector {
    fn new(started: Instant) -> Self {
        LineCollector { started, partial: [Vec::new(), Vec::new()], lines: Vec::new(), kept: 0, checked: 0 }
    }

    /// Whether a line completed since the last call, or the unterminated
    /// end of a stream, satisfies `until`.
    fn new_match(&mut self, until: &dyn Fn(&str) -> bool) -> bool {
        let fresh = self.lines[self.checked..].iter().any(|l| until(&l.text));
        self.checked = self.lines.len();
        fresh || self.partial.iter().any(|p| !p.is_empty() && until(&String::from_utf8_lossy(p)))
    }

    fn push(&mut self, stream: Stream, data: &[u8], at: Instant) {
        let index = stream as usize;
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|b| *b == b'\n') {
            let mut line = std::mem::take(&mut self.partial[index]);
            line.extend_from_slice(&rest[..nl]);
            self.emit(stream, line, at);
            rest = &rest[nl + 1..];
        }
        if self.kept + self.partial[index].len() + rest.len() <= MAX_CAPTURE {
            self.partial[index].extend_from_slice(rest);
        }
    }

    fn emit(&mut self, stream: Stream, mut line: Vec<u8>, at: Instant) {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if self.kept + line.len() > MAX_CAPTURE {
            return;
        }
        self.kept += line.len();
        let text = String::from_utf8_lossy(&line).into_owned();
        self.lines.push(TimedLine { at: at.saturating_duration_since(self.started), stream, text });
    }

    /// The lines, an unterminated last line of each stream included.
    fn finish(mut self) -> Vec<TimedLine> {
        let now = Instant::now();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.partial[stream as usize]);
            if !line.is_empty() {
                self.emit(stream, line, now);
            }
        }
        self.lines
    }
}

/// How often [`Spawned`] looks whether its child has exited.
const SPAWNED_POLL: Duration = Duration::from_millis(100);

/// What a [`Spawned`] child's stdout and stderr are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpawnedOutput {
    /// Ours: what it prints reaches our log (a package manager's).
    Inherit,
    /// stdout discarded, stderr kept for [`Spawned::wait`].
    KeepStderr,
}

/// How [`Spawned::wait_with_deadline`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DeadlineOutcome {
    /// Exited with success.
    Done,
    /// Exited with this failure status.
    Failed(ExitStatus),
    /// Ran past the deadline and was stopped.
    TimedOut,
}

/// A child started with stdin closed, in our process group (so a terminal's
/// Ctrl-C reaches it too), that we wait for or stop ourselves.
#[derive(Debug)]
pub(crate) struct Spawned {
    child: std::process::Child,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Spawned {
    /// Start `program args`.
    pub(crate) fn spawn<S: AsRef<OsStr>>(
        program: &std::path::Path,
        args: &[S],
        output: SpawnedOutput,
    ) -> std::io::Result<Spawned> {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null());
        if output == SpawnedOutput::KeepStderr {
            cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        }
        let mut child = cmd.spawn()?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        Ok(Spawned { child, stderr })
    }

    /// The exit status, if it has exited.
    pub(crate) fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// SIGTERM the child, give it `grace` to exit, then SIGKILL it.
    pub(crate) fn stop(&mut self, grace: Duration) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(SPAWNED_POLL);
        }
        let _ = self.child.kill();
    }

    /// Wait for the child to exit: its status and the stderr kept
    /// ([`SpawnedOutput::KeepStderr`]; empty otherwise).
    pub(crate) fn wait(mut self) -> std::io::Result<(ExitStatus, String)> {
        let status = self.child.wait()?;
        let text = self.stderr.take().and_then(|r| r.join().ok()).unwrap_or_default();
        Ok((status, text))
    }

    /// Wait at most `limit` for the child to exit; past it, [`Spawned::stop`]
    /// it with `grace`.
    pub(crate) fn wait_with_deadline(
        mut self,
        limit: Duration,
        grace: Duration,
    ) -> std::io::Result<DeadlineOutcome> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(if status.success() {
                    DeadlineOutcome::Done
                } else {
                    DeadlineOutcome::Failed(status)
                });
            }
            if started.elapsed() >= limit {
                self.stop(grace);
                self.wait()?;
                return Ok(DeadlineOutcome::TimedOut);
            }
            std::thread::sleep(SPAWNED_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn failure_shows_argv_and_stderr() {
        let err = output(&["sh", "-c", "echo boom >&2; exit 3"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sh -c 'echo boom >&2; exit 3'"), "{msg}");
        assert!(msg.contains("boom"), "{msg}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = output(&["/nonexistent/program"]).unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }));
    }

    #[test]
    fn success_returns_stdout() {
        assert_eq!(output(&["echo", "hi"]).unwrap(), b"hi\n");
    }

    #[test]
    fn bulk_output_returns_all_of_stdout_and_fails_like_output() {
        // More than a pipe holds, so the program would have had to wait
        // for a reader.
        let out = bulk_output(&["sh", "-c", "head -c 3000000 /dev/zero; echo end"]).unwrap();
        assert_eq!(out.len(), 3_000_004);
        assert!(out.ends_with(b"\0end\n"));
        let err = bulk_output(&["sh", "-c", "echo out; echo boom >&2; exit 3"]).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ProcessError::Failed { .. }), "{msg}");
        assert!(msg.contains("boom") && msg.contains("exit status: 3"), "{msg}");
        assert!(matches!(bulk_output(&["/nonexistent/program"]), Err(ProcessError::Spawn { .. })));
    }

    #[test]
    fn timed_lines_carry_arrival_times_and_streams() {
        let out = Timed::new(
            // Lines of different streams are ordered by arrival, which only
            // their time apart decides (two reader threads).
            &["sh", "-c", "echo one; sleep 0.3; echo two >&2; sleep 0.3; printf 'three\\r\\nrest'"],
            Duration::from_secs(20),
        )
        .env("BENCH_X", "x")
        .run()
        .unwrap();
        assert!(out.status.success());
        let texts: Vec<(&str, Stream)> = out.lines.iter().map(|l| (l.text.as_str(), l.stream)).collect();
        assert_eq!(
            texts,
            [
                ("one", Stream::Stdout),
                ("two", Stream::Stderr),
                ("three", Stream::Stdout),
                ("rest", Stream::Stdout)
            ]
        );
        assert!(out.lines[1].at >= out.lines[0].at + Duration::from_millis(250), "{:?}", out.lines);
        assert!(out.elapsed >= Duration::from_millis(300));
    }

    #[test]
    fn timed_failure_is_returned_with_its_output() {
        let out = Timed::new(&["sh", "-c", "echo boom >&2; exit 3"], Duration::from_secs(20)).run().unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stderr_tail(), "boom");
    }

    #[test]
    fn timed_environment_is_set_and_removed() {
        let out = Timed::new(&["sh", "-c", "echo \"$GA_SET:${HOME-unset}:$LANG\""], Duration::from_secs(20))
            .env("GA_SET", "yes")
            .env_remove("HOME")
            .run()
            .unwrap();
        assert_eq!(out.lines[0].text, "yes:unset:C");
    }

    #[test]
    fn timeout_stops_the_whole_process_group() {
        let tmp = tempfile::tempdir().unwrap();
        let pidfile = tmp.path().join("grandchild");
        // The grandchild ignores nothing but would outlive a plain kill of sh.
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let started = Instant::now();
        let err = Timed::new(&["sh", "-c", &script], Duration::from_millis(500)).run().unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut { .. }), "{err}");
        assert!(err.to_string().contains("did not finish within 0.5 s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // Reaped by init once killed; give it a moment.
        let gone = (0..50).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
        });
        assert!(gone, "grandchild {pid} survived the timeout");
    }

    #[test]
    fn cancel_flag_stops_the_program() {
        let flag = Arc::new(AtomicBool::new(false));
        let setter = {
            let flag = Arc::clone(&flag);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                flag.store(true, Ordering::Relaxed);
            })
        };
        let err = Timed::new(&["sleep", "60"], Duration::from_secs(60)).cancel_on(flag).run().unwrap_err();
        setter.join().unwrap();
        assert!(matches!(err, ProcessError::Cancelled { .. }), "{err}");
    }

    /// Issue 9: a 500 ms deadline read "within 0 s".
    #[test]
    fn deadlines_are_shown_to_the_millisecond() {
        assert_eq!(seconds(Duration::from_secs(3)), "3 s");
        assert_eq!(seconds(Duration::from_millis(500)), "0.5 s");
        assert_eq!(seconds(Duration::from_millis(1250)), "1.25 s");
        assert_eq!(seconds(Duration::from_micros(10)), "0.001 s");
        let err = ProcessError::TimedOut {
            argv: "qemu".into(),
            after: Duration::from_millis(500),
            stderr_tail: String::new(),
        };
        assert_eq!(err.to_string(), "`qemu` did not finish within 0.5 s and was stopped");
    }

    static WATCHED: Running = Running::new();

    #[test]
    fn watch_stops_at_the_awaited_line_and_keeps_the_output() {
        // Lines of the two streams are ordered by arrival (two reader
        // threads): the earlier one gets time to arrive before the match.
        let started = Instant::now();
        let w = Timed::new(
            &["sh", "-c", "echo booting >&2; sleep 0.3; echo 'init: up'; sleep 60"],
            Duration::from_secs(30),
        )
        .share_process_group()
        .track_in(&WATCHED)
        .watch(|line| line.contains("init: up"))
        .unwrap();
        assert_eq!(w.end, WatchEnd::Matched);
        assert!(started.elapsed() < Duration::from_secs(20), "not stopped at the match");
        assert!(w.lines.iter().any(|l| l.text == "booting" && l.stream == Stream::Stderr), "{:?}", w.lines);
        assert!(WATCHED.is_empty());
    }

    #[test]
    fn watch_reports_exit_and_deadline_with_the_output() {
        let w = Timed::new(&["sh", "-c", "echo error: no; exit 4"], Duration::from_secs(20))
            .watch(|line| line.contains("never"))
            .unwrap();
        assert!(matches!(w.end, WatchEnd::Exited(st) if st.code() == Some(4)), "{:?}", w.end);
        assert_eq!(w.lines[0].text, "error: no");
        let w = Timed::new(&["sh", "-c", "echo waiting; sleep 60"], Duration::from_millis(500))
            .watch(|line| line.contains("never"))
            .unwrap();
        assert_eq!(w.end, WatchEnd::TimedOut);
        assert_eq!(w.elapsed, Duration::from_millis(500));
        assert_eq!(w.lines[0].text, "waiting");
        // A program that cannot start is an error, as with run().
        let err = Timed::new(&["/nonexistent/qemu"], Duration::from_secs(1)).watch(|_| true).unwrap_err();
        assert!(matches!(err, ProcessError::Spawn { .. }), "{err}");
    }

    #[test]
    fn a_hanging_child_is_ended_and_a_failing_one_reported() {
        let sh = std::path::Path::new("/bin/sh");
        let run = |script: &str, limit| {
            Spawned::spawn(sh, &["-c", script], SpawnedOutput::Inherit)
                .unwrap()
                .wait_with_deadline(limit, Duration::from_secs(10))
                .unwrap()
        };
        assert_eq!(run("exit 0", Duration::from_secs(5)), DeadlineOutcome::Done);
        assert!(
            matches!(run("exit 3", Duration::from_secs(5)), DeadlineOutcome::Failed(s) if s.code() == Some(3))
        );
        assert_eq!(run("exec sleep 600", Duration::from_millis(300)), DeadlineOutcome::TimedOut);
    }

    #[test]
    fn a_stopped_child_ends_and_its_stderr_is_kept() {
        let sh = std::path::Path::new("/bin/sh");
        let mut child =
            Spawned::spawn(sh, &["-c", "echo kept >&2; exec sleep 600"], SpawnedOutput::KeepStderr).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(child.try_wait().unwrap(), None);
        child.stop(Duration::from_secs(10));
        let (status, text) = child.wait().unwrap();
        assert!(!status.success());
        assert_eq!(text, "kept\n");
    }
}
