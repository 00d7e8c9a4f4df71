//! Integration tests.

mod initrd;
mod qemu;
