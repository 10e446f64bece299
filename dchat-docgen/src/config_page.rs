//! dchatd.toml(5): every key of `dchatd::config::keys::KEYS`, section by
//! section, with its type, default, environment variable and meaning.

use clap_mangen::roff::{bold, italic, roman};

use crate::roff_util::{Doc, Page};
use crate::{MANUAL, MAN_DATE};
use dchatd::config::keys::{Kind, KEYS, SECTIONS};
use dchatd::config::DEFAULT_CONFIG_PATH;

pub fn render() -> String {
    let mut r = Doc::new();
    let source = format!("dchat {}", dchatd::VERSION);
    r.control("TH", &["DCHATD.TOML", "5", MAN_DATE, source.as_str(), MANUAL]);
    r.section("NAME");
    r.para("dchatd.toml - configuration file of the dchat daemon");
    r.section("SYNOPSIS");
    r.para_inline(vec![italic(DEFAULT_CONFIG_PATH)]);
    r.line_after_break(vec![italic("/etc/dchat/"), italic("NAME"), italic(".toml")]);

    r.section("DESCRIPTION");
    r.para_inline(vec![
        bold("dchatd"),
        roman(format!(
            "(8) reads its configuration from a TOML file: {DEFAULT_CONFIG_PATH} by default, another file with --config, \
             or /etc/dchat/NAME.toml for the instance dchatd@NAME.service. The packaged file sets every key to its \
             default, with a comment saying what it does; \"dchatd --print-default-config\" prints it again."
        )),
    ]);
    r.para(
        "Each value is taken from the first of these that sets it: a command-line flag (--state-dir, --socket, \
         --log-level, --log-format), an environment variable DCHAT_SECTION_KEY, the file, the --dev defaults \
         when --dev is given, and the built-in default listed below. Unknown sections and keys are errors, as \
         are values of the wrong type; the daemon then exits with status 78 and names the key and the line.",
    );
    r.para_inline(vec![
        roman("Check a file with "),
        bold("dchatd --check-config"),
        roman(
            " [--config FILE]. On SIGHUP (\"systemctl reload dchatd\") the daemon rereads the file: \
                   log.level takes effect at once; other changes are logged as needing a restart.",
        ),
    ]);

    for name in SECTIONS {
        r.subsection(&format!("[{name}]"));
        for key in KEYS.iter().filter(|k| k.section == *name) {
            let env = format!("DCHAT_{}_{}", key.section, key.key).to_uppercase();
            let tag = vec![bold(key.key), roman(" = "), roman(key.default)];
            let body = format!("{} Type: {}. Environment: {env}.", key.doc, kind_name(key.kind));
            r.tagged(tag, &body);
        }
    }

    r.section("ENVIRONMENT");
    r.para(
        "Any key can be set by the environment as DCHAT_ followed by the section and the key in capitals, \
         joined by an underscore, as listed with each key above. Lists are written comma-separated, \
         booleans as true or false. In a unit, use Environment= in a drop-in (\"systemctl edit dchatd\").",
    );
    r.example(&[
        "DCHAT_LOG_LEVEL=debug",
        "DCHAT_NETWORK_BOOTSTRAP=/dns4/seed.example.org/tcp/7070/p2p/12D3KooW...",
    ]);

    r.section("EXAMPLE");
    r.para("A relay that also hosts accounts, with metrics for a local Prometheus:");
    r.example(&[
        "[node]",
        "roles = [\"user\", \"relay\"]",
        "",
        "[network]",
        "listen = [\"/ip4/0.0.0.0/tcp/7070\", \"/ip4/0.0.0.0/udp/7070/quic-v1\"]",
        "bootstrap = [\"/dns4/seed.example.org/tcp/7070/p2p/12D3KooW...\"]",
        "",
        "[metrics]",
        "listen = \"127.0.0.1:9090\"",
    ]);

    r.section("FILES");
    r.tagged(
        vec![italic(DEFAULT_CONFIG_PATH)],
        "The packaged configuration (a conffile: upgrades keep your edits).",
    );
    r.tagged(
        vec![italic("/etc/dchat/"), italic("NAME"), italic(".toml")],
        "One instance of dchatd@.service. Its storage.state_dir and control.socket are overridden by the \
         unit: /var/lib/dchat/NAME and /run/dchat/NAME/dchatd.sock.",
    );
    r.see_also(&[("dchatd", "8"), ("dchatctl", "1"), ("systemd.exec", "5")]);

    let mut page = Page::default();
    page.push_doc(r);
    page.finish()
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "string",
        Kind::StrList => "list of strings",
        Kind::Int => "integer",
        Kind::Bool => "boolean",
    }
}
