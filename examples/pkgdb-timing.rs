//! Times one package handler the way a build uses it: open the database
//! under ROOT, resolve the requested names to their closure, list the
//! closure's files. Prints the median of RUNS runs (default 21) on one line.
//! Driven by `scripts/bench-pkgdb.sh`, which sets up same-sized dpkg, rpm and
//! pacman roots with the real tools and times the tools' own listings beside
//! it.
//!
//!     cargo run --release --example pkgdb-timing -- ROOT NAME...

use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(root) = args.next().map(PathBuf::from) else {
        eprintln!("usage: pkgdb-timing ROOT NAME...");
        std::process::exit(2);
    };
    let names: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let runs: usize = std::env::var("RUNS").ok().and_then(|r| r.parse().ok()).unwrap_or(21);
    let mut times: Vec<Duration> = Vec::with_capacity(runs);
    let (mut handler, mut packages, mut files) = ("", 0, 0);
    for _ in 0..runs {
        let start = Instant::now();
        let db = guestfs_appliance::package::detect(&root).unwrap_or_else(|e| {
            eprintln!("pkgdb-timing: {e}");
            std::process::exit(2)
        });
        let resolution = db.resolve(&names).expect("resolve");
        let listed = db.files(&resolution.packages).expect("files");
        times.push(start.elapsed());
        (handler, packages, files) = (db.handler(), resolution.packages.len(), listed.len());
    }
    times.sort();
    let line = format!(
        "{handler}: closure of {packages} packages + {files} files: median {:.1} ms (min {:.1}, {runs} runs)\n",
        times[runs / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3
    );
    guestfs_appliance::stdout::write(line).expect("writing to stdout");
}
