//! One module per subcommand; each has `Args` (clap) and `run`.

pub mod device;
pub mod info;
pub mod kernels;
pub mod plan;
pub mod eval;
pub mod generate;
pub mod calibrate;
pub mod bench;
pub mod profile;
pub mod tune;
pub mod auto;
pub mod report;
pub mod compare;
