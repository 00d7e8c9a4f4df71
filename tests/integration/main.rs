//! Integration tests: the real binaries, real host tools (e2fsck, debugfs,
//! cpio, qemu, guestfish) and the host's real package database. One test
//! binary (`autotests = false`) so the binaries are built once.

mod bad_input;
mod base_archives;
mod bench;
mod build;
mod cache;
mod check;
mod cli;
mod docs;
mod env;
mod environment;
mod hardening;
mod hostile_files;
mod initrd;
mod layout;
mod outputs;
mod packages;
mod packages_built;
mod packaging;
mod pipe;
mod pkgdb;
mod qemu;
mod reproducible;
mod schedule;
mod status;
mod util;
mod watch;
