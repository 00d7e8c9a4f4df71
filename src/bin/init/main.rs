//! The appliance init.
fn main() {}
