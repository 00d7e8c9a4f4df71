//! One module per subcommand. Commands are glue: they parse nothing (see
//! `cli`) and own no format (see `image`, `package`, `input`).

pub mod bench;
pub mod build;
pub mod cache;
pub mod check;
pub mod env;
pub mod generate;
pub mod hook;
pub mod make_fixed;
pub mod schedule;
pub mod status;
pub mod watch;
