//! The report's figures, one file each; every figure holds the data it draws, draws itself
//! on any backend and gives that data back as a table.

pub mod breakdown;
pub mod pareto;
pub mod plan_map;
pub mod roofline;
pub mod threads;
pub mod tokens;
pub mod validation;
