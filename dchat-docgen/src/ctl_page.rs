//! dchatctl(1): one page with every subcommand, walked from the clap
//! definition (`dchatctl::cli::Cli`), so a new subcommand or flag appears
//! here as soon as it exists.

use clap::{Arg, ArgAction, Command, CommandFactory};
use clap_mangen::roff::{bold, italic, roman};
use clap_mangen::Man;

use crate::roff_util::{flag_words, is_automatic, synopsis_flag, takes_value, value_name, Doc, Page};
use crate::{MANUAL, MAN_DATE};
use dchatctl::error::{EX_FAILED, EX_NOPERM, EX_UNAVAILABLE, EX_USAGE};

pub fn render() -> String {
    // Built once so that global flags are propagated and bin names are set;
    // the `help` pseudo-command documents nothing the page does not.
    let mut cmd = dchatctl::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let man = Man::new(cmd.clone())
        .title("DCHATCTL")
        .section("1")
        .date(MAN_DATE)
        .source(format!("dchat {}", dchatd::VERSION))
        .manual(MANUAL);

    let mut page = Page::default();
    page.push_man(&man, Man::render_title);
    page.push_man(&man, Man::render_name_section);

    let mut r = Doc::new();
    r.section("SYNOPSIS");
    let mut line = vec![bold("dchatctl")];
    for arg in cmd.get_arguments().filter(|a| a.is_global_set() && !a.is_hide_set()) {
        line.extend(synopsis_flag(arg));
    }
    line.extend([roman(" "), italic("COMMAND"), roman(" ["), italic("ARGS"), roman("]")]);
    r.para_inline(line);
    r.line_after_break(vec![bold("dchatctl --help")]);
    r.line_after_break(vec![bold("dchatctl --version")]);

    r.section("DESCRIPTION");
    r.para_inline(vec![
        roman("dchatctl drives a running "),
        bold("dchatd"),
        roman(
            "(8) over its control socket: it shows the node's status, manages the accounts the daemon \
             hosts, and makes identity files offline.",
        ),
    ]);
    r.para(
        "Output is a table or a sentence for people; with --json it is one JSON document on standard \
         output (one per line for streams), for scripts. Errors go to standard error as one line.",
    );
    r.para(
        "The daemon accepts root, its own user and members of its control group (dchat in the packages). \
         Files named on the command line are opened by dchatctl with the caller's own permissions.",
    );
    page.push_doc(r);

    page.push_man(&man, Man::render_options_section);

    let mut r = Doc::new();
    r.section("COMMANDS");
    for leaf in leaves(&cmd) {
        command_entry(&mut r, leaf);
    }
    exit_status(&mut r);
    r.section("ENVIRONMENT");
    r.tagged_bold("DCHAT_SOCKET", "Control socket to use when --socket is not given.");
    r.tagged_bold(
        "DCHATD_BIN",
        "The dchatd that testnet up starts; by default the one next to dchatctl, else the first on PATH.",
    );
    r.section("FILES");
    r.tagged(
        vec![italic("/run/dchat/dchatd.sock")],
        "The control socket of the packaged daemon (dchatd.service).",
    );
    r.tagged(
        vec![italic("/run/dchat/"), italic("NAME"), italic("/dchatd.sock")],
        "The control socket of the instance dchatd@NAME.service.",
    );
    r.tagged(
        vec![italic("./dchat-dev/dchatd.sock")],
        "Used when the packaged socket does not exist: a daemon started with dchatd --dev in the current directory.",
    );
    examples(&mut r);
    r.see_also(&[("dchatd", "8"), ("dchatd.toml", "5")]);
    page.push_doc(r);
    page.finish()
}

/// Every runnable command below `root`, depth first, in definition order.
fn leaves(root: &Command) -> Vec<&Command> {
    let mut out = Vec::new();
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.has_subcommands() {
            out.extend(leaves(sub));
        } else {
            out.push(sub);
        }
    }
    out
}

/// The arguments a subcommand documents itself: not the global ones (they
/// are in OPTIONS) and not the automatic --help/--version.
fn own_args(cmd: &Command) -> Vec<&Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set() && !is_automatic(a))
        .collect()
}

fn command_entry(r: &mut Doc, cmd: &Command) {
    let path = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name()).to_string();
    r.subsection(&path);
    let args = own_args(cmd);

    // Synopsis line: the command, its flags, then its positionals.
    let mut line = vec![bold(path.as_str())];
    for arg in args.iter().filter(|a| !a.is_positional()) {
        line.extend(synopsis_flag(arg));
    }
    for arg in args.iter().filter(|a| a.is_positional()) {
        let name = value_name(arg);
        if arg.is_required_set() {
            line.extend([roman(" "), italic(name)]);
        } else {
            line.extend([roman(" ["), italic(name), roman("]")]);
        }
    }
    // A bare command needs no synopsis beyond its heading.
    if !args.is_empty() {
        r.para_inline(line);
    }

    if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        r.para(&about.to_string());
    }
    let aliases: Vec<&str> = cmd.get_visible_aliases().collect();
    if !aliases.is_empty() {
        let parent = path.rsplit_once(' ').map_or("", |(p, _)| p);
        let spelled: Vec<String> = aliases
            .iter()
            .map(|a| format!("{parent} {a}").trim().to_string())
            .collect();
        r.para(&format!("Also spelled: {}.", spelled.join(", ")));
    }
    for arg in args {
        let mut tag = if arg.is_positional() {
            vec![italic(value_name(arg))]
        } else {
            flag_words(arg, true)
        };
        if let Some(defaults) = default_values(arg) {
            tag.push(roman(format!(" [default: {defaults}]")));
        }
        let mut body = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| v.get_name().to_string())
            .collect();
        if !possible.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            body = format!("{}: one of {}.", body.trim_end_matches('.'), possible.join(", "));
        }
        r.tagged(tag, &body);
    }
}

fn default_values(arg: &Arg) -> Option<String> {
    if arg.is_hide_default_value_set() || !takes_value(arg) || arg.get_default_values().is_empty() {
        return None;
    }
    Some(
        arg.get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn exit_status(r: &mut Doc) {
    r.section("EXIT STATUS");
    r.tagged_bold("0", "Success. For health: the daemon is live and ready.");
    r.tagged_bold(
        &EX_FAILED.to_string(),
        "The request failed (the daemon answered with an error, or a local file or password problem). \
         For health: not ready.",
    );
    r.tagged_bold(
        &EX_USAGE.to_string(),
        "Usage error: unknown command or flag, or a missing or invalid argument.",
    );
    r.tagged_bold(
        &EX_UNAVAILABLE.to_string(),
        "The daemon cannot be reached: no socket, nobody listening, or it went away mid-request (EX_UNAVAILABLE).",
    );
    r.tagged_bold(
        &EX_NOPERM.to_string(),
        "Permission denied (EX_NOPERM): the caller may not open the socket, or the daemon refused the caller \
         because it is not root, the daemon's user or a member of the control group.",
    );
}

fn examples(r: &mut Doc) {
    r.section("EXAMPLES");
    r.para("Is the node up, and what height has it reached?");
    r.example(&["dchatctl status", "dchatctl status --json"]);
    r.para("Create an account and back it up to an encrypted file:");
    r.example(&[
        "dchatctl account create alice",
        "dchatctl account export alice --output alice.key",
    ]);
    r.para("Load completions into the running shell (bash shown; also zsh and fish):");
    r.example(&["source <(dchatctl completions bash)"]);
}
