//! Reports: figures and tables drawn from profile, plan and Pareto files. Knows the file
//! schemas only, never how anything was measured.
