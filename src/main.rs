//! The `guestfs-appliance` command.
fn main() {}
