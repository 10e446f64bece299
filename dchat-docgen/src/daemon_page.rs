//! dchatd(8): the flags come from clap (`dchatd::cli::Args`); the rest
//! describes how the daemon lives under systemd, with the paths, names and
//! exit codes taken from the daemon's own constants.

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman};
use clap_mangen::Man;

use crate::roff_util::{flag_words, is_automatic, synopsis_flag, Doc, Page};
use crate::{MANUAL, MAN_DATE};
use dchatd::config::{DEFAULT_CONFIG_PATH, DEFAULT_DEV_STATE_DIR};
use dchatd::control::FD_NAME;
use dchatd::error::{EX_CANTCREAT, EX_CONFIG};

/// Flags that make dchatd do one thing and exit; the synopsis shows each
/// as its own form.
const MODES: &[&str] = &["check-config", "print-default-config"];

pub fn render() -> String {
    let mut cmd = dchatd::cli::Args::command();
    cmd.build();
    let man = Man::new(cmd.clone())
        .title("DCHATD")
        .section("8")
        .date(MAN_DATE)
        .source(format!("dchat {}", dchatd::VERSION))
        .manual(MANUAL);
    let mut page = Page::default();
    page.push_man(&man, Man::render_title);
    page.push_man(&man, Man::render_name_section);

    let mut r = Doc::new();
    synopsis(&mut r, &cmd);
    r.section("DESCRIPTION");
    r.para_inline(vec![
        roman(
            "dchatd is the daemon of one dchat node. It does the peer-to-peer networking, takes part in \
         consensus when it is a validator, stores accounts, messages and the ledger in SQLite, and \
         serves local clients such as ",
        ),
        bold("dchatctl"),
        roman("(1) on a Unix control socket."),
    ]);
    r.para(
        "What a node does is chosen by its roles (node.roles in the configuration): user (hosts local \
         accounts, sends and receives), relay (store-and-forward mailboxes and relaying for peers behind \
         NAT) and validator (produces and finalizes blocks).",
    );
    r.para_inline(vec![
        roman("Started by systemd (the packaged "),
        bold("dchatd.service"),
        roman("), it reads "),
        italic(DEFAULT_CONFIG_PATH),
        roman(", keeps its state in "),
        italic("/var/lib/dchat"),
        roman(" and serves the control socket "),
        italic("/run/dchat/dchatd.sock"),
        roman(". With "),
        bold("--dev"),
        roman(
            " it runs a whole single-machine network (all three roles, a one-validator chain) with everything under ",
        ),
        italic(DEFAULT_DEV_STATE_DIR),
        roman(" and needs no setup."),
    ]);
    page.push_doc(r);

    page.push_man(&man, Man::render_options_section);

    let mut r = Doc::new();
    startup(&mut r);
    systemd(&mut r);
    signals(&mut r);
    access(&mut r);
    exit_status(&mut r);
    environment(&mut r);
    files(&mut r);
    examples(&mut r);
    r.see_also(&[
        ("dchatctl", "1"),
        ("dchatd.toml", "5"),
        ("systemctl", "1"),
        ("journalctl", "1"),
        ("systemd.service", "5"),
        ("systemd.socket", "5"),
        ("systemd.exec", "5"),
        ("sd_notify", "3"),
        ("sysusers.d", "5"),
    ]);
    page.push_doc(r);
    page.finish()
}

/// The daemon form with every ordinary flag, then one line per mode flag
/// (plus the flags that matter to it), then --version.
fn synopsis(r: &mut Doc, cmd: &clap::Command) {
    r.section("SYNOPSIS");
    let is_mode = |a: &clap::Arg| a.get_long().is_some_and(|l| MODES.contains(&l));
    let mut line = vec![bold("dchatd")];
    for arg in cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !is_automatic(a) && !is_mode(a))
    {
        line.extend(synopsis_flag(arg));
    }
    r.para_inline(line);
    let config = cmd.get_arguments().find(|a| a.get_long() == Some("config"));
    for mode in cmd.get_arguments().filter(|a| is_mode(a)) {
        let mut line = vec![bold("dchatd"), roman(" ")];
        line.extend(flag_words(mode, false));
        if let (Some(config), Some("check-config")) = (config, mode.get_long()) {
            line.extend(synopsis_flag(config));
        }
        r.line_after_break(line);
    }
    if let Some(version) = cmd
        .get_arguments()
        .find(|a| matches!(a.get_action(), clap::ArgAction::Version))
    {
        let mut line = vec![bold("dchatd"), roman(" ")];
        line.extend(flag_words(version, false));
        r.line_after_break(line);
    }
}

fn startup(r: &mut Doc) {
    r.section("START AND STOP");
    r.para(
        "At start dchatd parses its flags, loads and validates the whole configuration before doing any \
         other I/O (a bad file or value stops it with exit status 78, naming the key and where it was \
         set), sets up logging, opens and migrates the database, binds the control socket or takes it \
         from systemd, starts the network, consensus and relay parts its roles need, and only then reports \
         itself ready. While consensus catches up the daemon stays ready and says so in its status.",
    );
    r.para(
        "On SIGTERM or SIGINT it stops accepting work, lets open control requests finish, and tears the \
         parts down in reverse order, closing the database last. The whole shutdown is bounded by \
         node.shutdown_timeout; if it takes longer the daemon exits with status 1.",
    );
}

fn systemd(r: &mut Doc) {
    r.section("SYSTEMD INTEGRATION");
    r.para(
        "All of the following is inactive when dchatd is not run by systemd; it then logs to standard \
         error and binds its socket itself.",
    );
    r.tagged(
        vec![bold("Type=notify")],
        "READY=1 is sent from the main process once the database is migrated and the socket is bound, so \
         \"systemctl start dchatd\" returns when the daemon can be used. STATUS= carries one line (roles, \
         peers, chain height) and is kept current; \"systemctl status dchatd\" shows it. Long database \
         migrations ask for more start time with EXTEND_TIMEOUT_USEC=. STOPPING=1 is sent on shutdown.",
    );
    r.tagged(
        vec![bold("WatchdogSec=")],
        "When systemd sets WATCHDOG_USEC, dchatd sends WATCHDOG=1 at half that interval. A hung daemon is \
         killed and restarted by the unit's Restart= policy.",
    );
    r.tagged(
        vec![bold("Socket activation")],
        "When started with a socket from dchatd.socket, dchatd serves the socket it was passed instead of \
         binding its own. The socket must be a listening Unix stream socket named with \
         FileDescriptorName=control in the socket unit; control.socket is then ignored, and systemd, not \
         dchatd, owns the socket file.",
    );
    r.para_inline(vec![
        roman("The passed socket is looked up by the name "),
        bold(FD_NAME),
        roman(
            "; a set of passed sockets without it is an error, so a unit mistake cannot leave a socket nobody serves.",
        ),
    ]);
    r.tagged(
        vec![bold("Journal")],
        "With log.format = \"auto\" (the default), dchatd logs with journald's native protocol when \
         systemd connected its standard error to the journal (JOURNAL_STREAM). Every field of a log event \
         becomes a journal field: \"journalctl -u dchatd -o verbose\" shows them, and \"journalctl \
         PEER_ID=...\" selects by them.",
    );
    r.subsection("Units");
    r.tagged_bold(
        "dchatd.service",
        "The daemon as user and group dchat, with StateDirectory=dchat, RuntimeDirectory=dchat, \
         ConfigurationDirectory=dchat, the watchdog, Restart=on-failure and a hardened sandbox. \
         \"systemctl reload dchatd\" sends SIGHUP.",
    );
    r.tagged_bold(
        "dchatd.socket",
        "The control socket /run/dchat/dchatd.sock, mode 0660, group dchat. It stays open while the \
         service restarts, so clients connecting meanwhile wait instead of failing.",
    );
    r.tagged_bold(
        "dchatd@.service",
        "More nodes on one host: dchatd@NAME reads /etc/dchat/NAME.toml, keeps its state in \
         /var/lib/dchat/NAME and serves /run/dchat/NAME/dchatd.sock (these two override \
         storage.state_dir and control.socket in the file). Give each instance its own \
         network.listen ports.",
    );
}

fn signals(r: &mut Doc) {
    r.section("SIGNALS");
    r.tagged_bold(
        "SIGHUP",
        "Reread the configuration (what \"systemctl reload\" sends). The log level changes at once; \
         changes to keys that need a restart (roles, listen addresses, socket, state directory, log \
         format) are logged as such. A configuration that does not load is reported and the running \
         one is kept.",
    );
    r.tagged_bold("SIGTERM, SIGINT", "Shut down cleanly (see START AND STOP).");
}

fn access(r: &mut Doc) {
    r.section("CONTROL SOCKET ACCESS");
    r.para(
        "The socket file is mode 0660 and group dchat, and each connection is also checked against the \
         peer credentials the kernel reports (SO_PEERCRED): root, the daemon's own user and members of \
         control.group may use every method; anyone else is refused and the refusal is logged. With \
         control.public_read = true everyone may call the read-only methods. Add a user to the group \
         with \"adduser NAME dchat\" (or \"usermod -aG dchat NAME\").",
    );
    r.para(
        "Because of this check the unit does not use PrivateUsers=: inside a private user namespace \
         every client would appear as the overflow user and be refused.",
    );
}

fn exit_status(r: &mut Doc) {
    r.section("EXIT STATUS");
    r.tagged_bold("0", "Clean shutdown; with --check-config, the configuration is valid.");
    r.tagged_bold(
        "1",
        "The daemon failed while running, or shutdown took longer than node.shutdown_timeout.",
    );
    r.tagged_bold(
        &EX_CANTCREAT.to_string(),
        "The state directory could not be created or opened (EX_CANTCREAT).",
    );
    r.tagged_bold(
        &EX_CONFIG.to_string(),
        "Bad configuration (EX_CONFIG): a file, variable or flag with an invalid value, an unknown \
         key, a control group that does not exist, or logging that cannot be set up. The message names \
         the key and where it was set.",
    );
}

fn environment(r: &mut Doc) {
    r.section("ENVIRONMENT");
    r.tagged(
        vec![bold("DCHAT_"), italic("SECTION"), bold("_"), italic("KEY")],
        "Overrides one configuration key, for example DCHAT_LOG_LEVEL=debug or \
         DCHAT_METRICS_LISTEN=127.0.0.1:9090; lists are comma-separated. An unknown key in a known \
         section is an error. Flags still win over these. See dchatd.toml(5).",
    );
    r.tagged_bold(
        "NOTIFY_SOCKET, WATCHDOG_USEC",
        "Set by systemd for Type=notify and WatchdogSec=.",
    );
    r.tagged_bold(
        "LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES",
        "Set by systemd for socket activation; read once at start and removed from the environment.",
    );
    r.tagged_bold(
        "JOURNAL_STREAM",
        "Set by systemd when standard error goes to the journal.",
    );
}

fn files(r: &mut Doc) {
    r.section("FILES");
    r.tagged(vec![italic(DEFAULT_CONFIG_PATH)], "The configuration file, read when --config is not given and the file exists; otherwise the built-in defaults apply.");
    r.tagged(
        vec![italic("/etc/dchat/"), italic("NAME"), italic(".toml")],
        "Configuration of the instance dchatd@NAME.service.",
    );
    r.tagged(
        vec![italic("/var/lib/dchat/")],
        "State: the database dchat.sqlite3, the keystore and the node key. Mode 0700, owned by dchat.",
    );
    r.tagged(vec![italic("/run/dchat/dchatd.sock")], "The control socket.");
    r.tagged(
        vec![italic("/usr/lib/systemd/system/dchatd.service")],
        "The unit; override settings with \"systemctl edit dchatd\" rather than editing it.",
    );
    r.tagged(
        vec![italic("/usr/lib/sysusers.d/dchat.conf")],
        "Declares the system user and group dchat.",
    );
    r.tagged(
        vec![italic("/usr/lib/tmpfiles.d/dchat.conf")],
        "Declares /var/lib/dchat and /run/dchat.",
    );
}

fn examples(r: &mut Doc) {
    r.section("EXAMPLES");
    r.para("Start the packaged daemon now and at every boot, then follow its log:");
    r.example(&["systemctl enable --now dchatd", "journalctl -u dchatd -f"]);
    r.para("Check an edited configuration before reloading:");
    r.example(&["dchatd --check-config && systemctl reload dchatd"]);
    r.para("Run a throwaway network in the current directory, without systemd:");
    r.example(&["dchatd --dev", "dchatctl status"]);
    r.para("A second node on the same host:");
    r.example(&[
        "dchatd --print-default-config > /etc/dchat/second.toml",
        "editor /etc/dchat/second.toml        # other network.listen ports",
        "systemctl enable --now dchatd@second",
        "dchatctl --socket /run/dchat/second/dchatd.sock status",
    ]);
}
