//! Why a report could not be written. Every message names the file and the problem.

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },
    #[error("{file}: {msg}")]
    Input { file: String, msg: String },
    #[error("{file}: cannot draw: {msg}")]
    Draw { file: String, msg: String },
    #[error("{0}")]
    Profile(#[from] profiler::profile::ProfileError),
    #[error("{0}")]
    Usage(String),
}

impl ReportError {
    pub(crate) fn input(file: impl std::fmt::Display, msg: impl std::fmt::Display) -> Self {
        ReportError::Input { file: file.to_string(), msg: msg.to_string() }
    }
}
