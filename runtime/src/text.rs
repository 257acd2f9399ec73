//! Reading evaluation and prompt text files: they must be non-empty UTF-8, and a failure
//! says which file and where.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not valid UTF-8 at byte offset {offset}", .path.display())]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{}: the file holds no text (empty or only whitespace)", .path.display())]
    Empty { path: PathBuf },
}

/// The whole file as a String; errors on I/O failure, invalid UTF-8 (with the byte offset
/// of the first bad byte) and empty or whitespace-only text.
pub fn read_text_file(path: impl AsRef<Path>) -> Result<String, TextError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|error| TextError::Io {
        path: path.into(),
        error,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| TextError::NotUtf8 {
        path: path.into(),
        offset: e.utf8_error().valid_up_to(),
    })?;
    if text.trim().is_empty() {
        return Err(TextError::Empty { path: path.into() });
    }
    Ok(text)
}
