//! Configuration errors: one line naming the file, the key and the line.

use std::fmt;
use std::path::PathBuf;

/// Where a bad value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: Option<usize> },
    Env { var: String },
    Flag { flag: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Origin,
    /// `section.key`, when the error is about one key.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn file(path: PathBuf, line: Option<usize>, key: Option<String>, message: impl Into<String>) -> Self {
        ConfigError {
            origin: Origin::File { path, line },
            key,
            message: message.into(),
        }
    }

    pub fn env(var: &str, key: String, message: impl Into<String>) -> Self {
        ConfigError {
            origin: Origin::Env { var: var.to_string() },
            key: Some(key),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File { path, line: Some(line) } => write!(f, "{}:{line}: ", path.display())?,
            Origin::File { path, line: None } => write!(f, "{}: ", path.display())?,
            Origin::Env { var } => write!(f, "environment variable {var}: ")?,
            Origin::Flag { flag } => write!(f, "{flag}: ")?,
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        // Messages from the TOML parser can span lines; the contract is one line.
        let one_line: Vec<&str> = self.message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        write!(f, "{}", one_line.join(" "))
    }
}

impl std::error::Error for ConfigError {}

/// 1-based line of byte offset `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
}

/// Finds the line on which `key` is set inside `[section]` (plain TOML as
/// written by people: `[section]` headers and `key = value` lines, or dotted
/// `section.key = value` at the top).
pub fn locate(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = header.trim().to_string();
            continue;
        }
        let Some((lhs, _)) = line.split_once('=') else { continue };
        let lhs = lhs.trim().trim_matches('"');
        let full = if current.is_empty() {
            lhs.to_string()
        } else {
            format!("{current}.{lhs}")
        };
        if full == format!("{section}.{key}") {
            return Some(i + 1);
        }
    }
    None
}

/// The `section.key` a parse error at `line` is about, read from the text.
pub fn key_at_line(text: &str, line: usize) -> Option<String> {
    let mut current = String::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(header) = l.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = header.trim().to_string();
        }
        if i + 1 == line {
            if l.starts_with('[') {
                return Some(current);
            }
            let lhs = l.split_once('=').map(|(k, _)| k.trim().trim_matches('"'))?;
            if lhs.is_empty() {
                return None;
            }
            return Some(if current.is_empty() {
                lhs.to_string()
            } else {
                format!("{current}.{lhs}")
            });
        }
    }
    None
}
