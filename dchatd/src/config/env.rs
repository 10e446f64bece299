//! `DCHAT_<SECTION>_<KEY>` environment overrides, typed by the key table.

use std::collections::BTreeMap;

use super::error::ConfigError;
use super::file::PartialConfig;
use super::keys::{self, Kind, SECTIONS};

/// Overrides read from the environment, and which variable set each key.
#[derive(Debug, Default)]
pub struct EnvOverrides {
    pub config: PartialConfig,
    /// `section.key` → variable name, to name the variable in errors.
    pub vars: BTreeMap<String, String>,
}

/// Reads the overrides from `vars`. Variables whose first word is not a
/// config section (such as `DCHAT_SOCKET`, read by dchatctl) are ignored; a
/// known section with an unknown key is an error, so typos do not pass.
pub fn read<I>(vars: I) -> Result<EnvOverrides, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut table = toml::Table::new();
    let mut names = BTreeMap::new();
    for (var, value) in vars {
        let Some(rest) = var.strip_prefix("DCHAT_") else {
            continue;
        };
        let Some((section, key)) = rest.split_once('_') else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        if !SECTIONS.contains(&section.as_str()) {
            continue;
        }
        let key = key.to_ascii_lowercase();
        let full = format!("{section}.{key}");
        let Some(doc) = keys::find(&section, &key) else {
            return Err(ConfigError::env(&var, full, "no such configuration key"));
        };
        let parsed = parse(doc.kind, &value).map_err(|m| ConfigError::env(&var, full.clone(), m))?;
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = entry {
            t.insert(key, parsed);
        }
        names.insert(full, var);
    }
    let config: PartialConfig = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
        // Values are typed above, so this only fails on enum values such as
        // an unknown role or log format; name the first variable we set.
        let var = names.values().next().cloned().unwrap_or_default();
        let key = names.keys().next().cloned().unwrap_or_default();
        ConfigError::env(&var, key, e.message().to_string())
    })?;
    Ok(EnvOverrides { config, vars: names })
}

fn parse(kind: Kind, value: &str) -> Result<toml::Value, String> {
    match kind {
        Kind::Str => Ok(toml::Value::String(value.to_string())),
        Kind::StrList => Ok(toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        )),
        Kind::Int => value
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected a whole number, got {value:?}")),
        Kind::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {value:?}")),
        },
    }
}
