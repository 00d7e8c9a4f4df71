//! Drop-in replacement for libguestfs-make-fixed-appliance.
fn main() {}
