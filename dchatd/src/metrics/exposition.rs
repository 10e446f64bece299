//! Rendering the registry for a scraper.
//!
//! prometheus-client writes OpenMetrics text only. Prometheus asks for that
//! (its Accept header names it first), but older scrapers and `promtool check
//! metrics` read the classic text format 0.0.4, so a scrape that does not ask
//! for OpenMetrics gets the same samples in the classic format, derived line
//! by line: the two differ only in the family names of counters and infos,
//! the `# UNIT` and `# EOF` lines and the `info` type.

use std::fmt::Write as _;

use prometheus_client::registry::Registry;

pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The classic Prometheus text format, version 0.0.4.
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }

    /// OpenMetrics when the Accept header prefers it (by q-value) over plain
    /// text; the classic format otherwise, and when there is no header.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else { return Format::Text };
        let mut openmetrics = 0.0_f64;
        let mut text = 0.0_f64;
        for item in accept.split(',') {
            let mut parts = item.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => openmetrics = openmetrics.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The whole exposition of `registry` in `format`.
pub fn encode(registry: &Registry, format: Format) -> Result<String, std::fmt::Error> {
    let mut openmetrics = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut openmetrics, registry)?;
    Ok(match format {
        Format::OpenMetrics => openmetrics,
        Format::Text => to_classic_text(&openmetrics),
    })
}

/// Rewrites OpenMetrics text (as prometheus-client writes it, without
/// exemplars) into the classic text format 0.0.4.
pub fn to_classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // prometheus-client writes HELP before TYPE; HELP needs the name TYPE
    // decides, so it waits for its TYPE line.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            // In OpenMetrics a counter family `x` has the sample `x_total` and
            // an info family `x` the sample `x_info`; the classic format names
            // the family after its sample.
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "gauge" | "histogram" | "summary" => ("", kind),
                _ => ("", "untyped"),
            };
            if let Some((help_name, text)) = help.take() {
                if help_name == name {
                    let _ = writeln!(out, "# HELP {name}{suffix} {text}");
                }
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        // `# UNIT`, `# EOF` and blank lines have no classic counterpart.
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
