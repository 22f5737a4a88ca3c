//! Configuration: the TOML file (raw serde types) checked once into the immutable [`Config`].

mod types;

pub use types::*;

use std::path::Path;

/// A config that could not be loaded; the message names the file, line and key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Parse and validate `text`, naming `source` in errors.
///
/// # Errors
/// Any syntax error, unknown key, bad value or dangling reference.
pub fn parse_str(_text: &str, _source: Option<&Path>) -> Result<Config, ConfigError> {
    Err(ConfigError("config parsing is not built yet".into()))
}

/// Read and validate the file at `path`.
///
/// # Errors
/// As [`parse_str`], plus the file cannot be read.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
    parse_str(&text, Some(path))
}
