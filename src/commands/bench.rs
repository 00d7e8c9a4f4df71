//! `bench`: options in, `bench::run`, then the report on stdout (a table,
//! or JSON with `--json`) and the optional files: `--svg FILE` and
//! `--stages-log DIR`, each written atomically (a temp file beside it,
//! created exclusively, fsynced, renamed over). The measuring lives in
//! `crate::bench`.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::bench::{self, launch::Appliance, stages, BenchOptions};
use crate::cli::BenchArgs;
use crate::config::Config;
use crate::health::{libguestfs, LibguestfsEnv};
use crate::printer::Printer;

/// Run `bench`.
pub fn run(args: &BenchArgs, config: &Config, printer: &Printer) -> Result<()> {
    // Output paths are checked before minutes of launches, not after.
    if let Some(svg) = &args.svg {
        let parent = parent_of(svg);
        if !parent.is_dir() {
            bail!("--svg {}: directory {} does not exist", svg.display(), parent.display());
        }
        if svg.is_dir() {
            bail!("--svg {}: is a directory; name a file", svg.display());
        }
    }
    let lg = LibguestfsEnv::from_env();
    let (dir, dir_source) = libguestfs::examined_dir(args.dir.as_deref(), &lg, config);
    let opts = BenchOptions {
        dir,
        dir_source,
        runs: args.runs as usize,
        warmup: args.warmup as usize,
        inspect: args.inspect.clone(),
        parallel: args.parallel.iter().map(|p| *p as usize).collect(),
        stages: args.stages,
        timeout: Duration::from_secs(args.timeout),
    };
    let cancel = bench::interrupt::cancel_on_signals().context("setting up Ctrl-C handling")?;
    let outcome = bench::run(&opts, printer, cancel)?;
    if let Some(svg) = &args.svg {
        let doc = bench::svg::render(&outcome.report)?;
        write_atomic(svg, doc.as_bytes()).with_context(|| format!("writing --svg {}", svg.display()))?;
        printer.info(format!("wrote {}", svg.display()));
    }
    if let Some(dir) = &args.stages_log {
        std::fs::create_dir_all(dir).with_context(|| format!("creating --stages-log {}", dir.display()))?;
        for (appliance, lines, exited) in &outcome.consoles {
            let path = dir.join(format!("{}-console.log", appliance.name()));
            let header = [
                format!(
                    "guestfs-appliance bench --stages: {} appliance, LIBGUESTFS_DEBUG=1 guestfish -a /dev/null run",
                    appliance.name()
                ),
                match appliance {
                    Appliance::Fixed => format!("LIBGUESTFS_PATH={}", opts.dir.display()),
                    Appliance::Supermin => format!("supermin.d in {}", outcome.report.supermin_dir.display()),
                },
                "each line: seconds since guestfish started (arrival on its stderr), then the line".into(),
            ];
            let text = stages::render_log(&header, lines, Some(*exited));
            write_atomic(&path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
            printer.info(format!("wrote {}", path.display()));
        }
    }
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&outcome.report).context("serialising the report")?;
        json.push('\n');
        json
    } else {
        bench::report::render_human(&outcome.report)
    };
    crate::stdout::write(text).context("writing to stdout")
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write `data` to `path` atomically, mode 0644
/// ([`crate::safefs::write_path_atomic`]: a temp file beside it with a
/// random name, `O_EXCL`, so nothing planted there is followed; fsync,
/// rename over `path`, replacing a symlink there, never writing through
/// it; fsync the directory).
fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    Ok(crate::safefs::write_path_atomic(path, data, 0o644)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_a_symlink_instead_of_following_it() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let out = tmp.path().join("bench.svg");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        write_atomic(&out, b"<svg/>").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!std::fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&out).unwrap(), b"<svg/>");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&out).unwrap().mode() & 0o777, 0o644);
        // Nothing else left behind.
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 2);
    }
}
