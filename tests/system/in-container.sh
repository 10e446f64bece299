#!/bin/bash
# Runs inside the booted Debian 12 container (systemd is PID 1), started by
# dchat-system-test.service once multi-user.target is reached. Installs the
# .deb with apt and checks the daemon's whole life under systemd. Writes
# TAP-style lines to /payload/results/log, figures to
# /payload/results/figures, then powers the container off.
#
# /payload/env names the packages: DEB1 (first install) and DEB2 (the
# same version rebuilt with a higher release, for the upgrade), VERSION.
set -u
source /payload/env
export DEBIAN_FRONTEND=noninteractive
results=/payload/results
log=$results/log
figures=$results/figures
: >"$log"
: >"$figures"

n=0
failed=0
say() { echo "$*" | tee -a "$log"; }
ok() { n=$((n + 1)); say "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); say "not ok $n - $*"; }
# check DESCRIPTION COMMAND...: ok when COMMAND exits 0; else its output is logged.
check() {
    local desc=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$desc"; else not_ok "$desc"; printf '%s\n' "$out" | sed 's/^/#   /' | tee -a "$log"; fi
}
# expect DESCRIPTION WANTED COMMAND...: ok when COMMAND prints exactly WANTED.
expect() {
    local desc=$1 wanted=$2 got
    shift 2
    got=$("$@" 2>&1)
    if [ "$got" = "$wanted" ]; then ok "$desc"; else not_ok "$desc (wanted '$wanted', got '$got')"; fi
}
# wait_for SECONDS COMMAND...: polls every 0.1 s until COMMAND succeeds.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}
figure() { echo "$1: $2" | tee -a "$figures"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
prop() { systemctl show -p "$1" --value "${2:-dchatd.service}"; }
journal_has() { # journal_has TEXT [journalctl args]: the dchatd journal contains TEXT
    local text=$1
    shift
    journalctl --sync 2>/dev/null
    journalctl -u dchatd --no-pager -o verbose "$@" | grep -qF -- "$text"
}
main_pid_changed_and_active() { # main_pid_changed_and_active OLDPID [UNIT]
    local pid
    pid=$(prop MainPID "${2:-dchatd.service}")
    [ "$pid" != 0 ] && [ "$pid" != "$1" ] && systemctl is-active -q "${2:-dchatd.service}"
}

say "# dchat system test on $(. /etc/os-release; echo "$PRETTY_NAME"), $(systemctl --version | head -1)"
check "systemd is PID 1" test "$(cat /proc/1/comm)" = systemd

# --------------------------------------------------------------- install
say "# install $DEB1"
check "apt-get install the .deb" apt-get install -y --no-install-recommends "/payload/$DEB1"
check "user dchat exists" getent passwd dchat
check "group dchat exists" getent group dchat
expect "dchatd.service enabled on first install" enabled systemctl is-enabled dchatd.service
expect "dchatd.socket enabled on first install" enabled systemctl is-enabled dchatd.socket
expect "dchatd.service not started by the install" inactive systemctl is-active dchatd.service
check "conffile /etc/dchat/dchatd.toml installed" test -f /etc/dchat/dchatd.toml
check "dchatd --check-config accepts it" dchatd --check-config
check "man pages installed" test -f /usr/share/man/man8/dchatd.8.gz -a -f /usr/share/man/man1/dchatctl.1.gz -a -f /usr/share/man/man5/dchatd.toml.5.gz
check "dashboard and alert rules installed" test -s /usr/share/dchat/grafana/dchat-dashboard.json -a -s /usr/share/dchat/prometheus/dchat-alerts.yml
check "bash completion loads" bash -c 'source /usr/share/bash-completion/completions/dchatctl && complete -p dchatctl'
check "/var/lib/dchat is 0700 dchat" test "$(stat -c '%a %U' /var/lib/dchat)" = "700 dchat"
figure "installed size (dpkg)" "$(dpkg-query -W -f='${Installed-Size}' dchat) KiB"

# --------------------------------------------------------------- start
say "# start"
t0=$(now_ms)
check "systemctl start dchatd (returns once READY=1 arrived)" systemctl start dchatd
t1=$(now_ms)
figure "systemctl start to active" "$((t1 - t0)) ms"
start_us=$(prop ExecMainStartTimestampMonotonic)
active_us=$(prop ActiveEnterTimestampMonotonic)
figure "exec to READY (systemd's timestamps)" "$(((active_us - start_us) / 1000)) ms"
expect "dchatd.service is active" active systemctl is-active dchatd.service
expect "dchatd.socket is active" active systemctl is-active dchatd.socket
status_text=$(prop StatusText)
if [ -n "$status_text" ]; then ok "STATUS= text shown: $status_text"; else not_ok "no STATUS= text"; fi
check "systemctl status shows the status line" sh -c 'systemctl status --no-pager dchatd | grep -q "Status: \""'
expect "control socket is 0660 group dchat" "660 dchat" stat -c '%a %G' /run/dchat/dchatd.sock
check "journal: the socket came from dchatd.socket" journal_has "using the control socket passed by systemd"
check "journal: startup line 'dchatd ready'" journal_has "MESSAGE=dchatd ready"
check "journal: structured field PEER_ID" journal_has "PEER_ID="
check "journal: structured field STATE_DIR" journal_has "STATE_DIR=/var/lib/dchat"
check "journal: SYSLOG_IDENTIFIER=dchatd" journal_has "SYSLOG_IDENTIFIER=dchatd"
check "journal: lines come from the main pid" journal_has "_PID=$(prop MainPID)"
check "journalctl can select by field (PEER_ID=...)" sh -c \
    'id=$(journalctl -u dchatd -o verbose | sed -n "s/^ *PEER_ID=//p" | head -1); [ -n "$id" ] && journalctl -q --no-pager PEER_ID="$id" | grep -q .'

# --------------------------------------------------------------- access
say "# control socket access"
useradd --create-home --groups dchat alice
useradd --create-home bob
check "root: dchatctl status" dchatctl status
check "root: dchatctl status --json has version and roles" sh -c 'dchatctl status --json | grep -q "\"version\"" && dchatctl status --json | grep -q "\"roles\""'
check "root: dchatctl health" dchatctl health
check "alice (group dchat): dchatctl status" runuser -u alice -- dchatctl status
runuser -u bob -- dchatctl status >/tmp/bob.out 2>&1
bob_rc=$?
if [ "$bob_rc" = 77 ]; then ok "bob (not in group dchat): refused with exit 77"; else not_ok "bob: exit $bob_rc, wanted 77: $(cat /tmp/bob.out)"; fi
check "root: dchatctl account create keepme" dchatctl account create keepme
check "account keepme is listed" sh -c 'dchatctl account list --json | grep -q "\"keepme\""'

# --------------------------------------------------------------- reload
say "# reload"
pid=$(prop MainPID)
restarts=$(prop NRestarts)
# An edit of the conffile, to be kept by the upgrade below.
sed -i 's/^level = "info"$/level = "debug"/' /etc/dchat/dchatd.toml
check "conffile edited (log.level = debug)" grep -qx 'level = "debug"' /etc/dchat/dchatd.toml
check "systemctl reload dchatd" systemctl reload dchatd
check "journal: SIGHUP reload logged" wait_for 5 journal_has "SIGHUP: reloading configuration"
check "journal: new log level applied" wait_for 5 journal_has "log level changed"
expect "still active after reload" active systemctl is-active dchatd
expect "same main pid after reload" "$pid" prop MainPID
expect "no restart for a reload" "$restarts" prop NRestarts

# --------------------------------------------------------------- kill -9
say "# kill -9"
pid=$(prop MainPID)
restarts=$(prop NRestarts)
t0=$(now_ms)
kill -9 "$pid"
check "restarted by Restart=on-failure after SIGKILL" wait_for 30 main_pid_changed_and_active "$pid"
t1=$(now_ms)
figure "SIGKILL to active again (RestartSec=2s)" "$((t1 - t0)) ms"
expect "NRestarts went up by one" "$((restarts + 1))" prop NRestarts
check "dchatctl status works after the restart" dchatctl status

# --------------------------------------------------------------- watchdog
say "# watchdog (drop-in: WatchdogSec=3s, no core dump)"
mkdir -p /run/systemd/system/dchatd.service.d
printf '[Service]\nWatchdogSec=3s\nTimeoutAbortSec=3s\nLimitCORE=0\n' >/run/systemd/system/dchatd.service.d/watchdog-test.conf
systemctl daemon-reload
check "restart with the short watchdog" systemctl restart dchatd
sleep 4
expect "pinging the watchdog keeps it running" active systemctl is-active dchatd
pid=$(prop MainPID)
kill -STOP "$pid"
check "a hung (SIGSTOPped) dchatd is killed and restarted" wait_for 40 main_pid_changed_and_active "$pid"
check "journal: watchdog timeout recorded" journal_has "Watchdog timeout"
rm -r /run/systemd/system/dchatd.service.d
systemctl daemon-reload
check "restart with the packaged watchdog" systemctl restart dchatd

# --------------------------------------------------------------- stop
say "# stop"
check "systemctl stop dchatd" systemctl stop dchatd
expect "inactive after stop" inactive systemctl is-active dchatd
expect "main process exit status 0" 0 prop ExecMainStatus
expect "result success" success prop Result
expect "dchatd.socket keeps listening" active systemctl is-active dchatd.socket
check "socket file still there" test -S /run/dchat/dchatd.sock
check "dchatctl status starts dchatd through the socket" dchatctl status
expect "active again by socket activation" active systemctl is-active dchatd

# --------------------------------------------------------------- instance
say "# instance dchatd@second"
sed -e 's|/tcp/7070|/tcp/7071|' -e 's|/udp/7070|/udp/7071|' /etc/dchat/dchatd.toml >/etc/dchat/second.toml
check "systemctl start dchatd@second" systemctl start dchatd@second
check "dchatctl on the instance socket" dchatctl --socket /run/dchat/second/dchatd.sock status
check "alice may use the instance too" runuser -u alice -- dchatctl --socket /run/dchat/second/dchatd.sock status
check "instance has its own database" test -f /var/lib/dchat/second/dchat.sqlite3
check "systemctl reload dchatd@second" systemctl reload dchatd@second
check "systemctl stop dchatd@second" systemctl stop dchatd@second
expect "instance exit status 0" 0 prop ExecMainStatus dchatd@second.service
check "instance runtime dir removed on stop" test ! -e /run/dchat/second
check "main socket untouched by the instance" test -S /run/dchat/dchatd.sock
systemctl start dchatd@missing >/dev/null 2>&1
expect "an instance without a config file fails with 78" 78 prop ExecMainStatus dchatd@missing.service
systemctl reset-failed dchatd@missing.service 2>/dev/null

# --------------------------------------------------------------- upgrade
say "# upgrade to $DEB2"
pid=$(prop MainPID)
check "dchatd running before the upgrade" systemctl is-active dchatd
check "apt-get install the rebuilt package" apt-get install -y --no-install-recommends "/payload/$DEB2"
expect "new version installed" "$VERSION2" dpkg-query -W -f='${Version}' dchat
check "dchatd restarted on the new package" main_pid_changed_and_active "$pid"
check "account keepme survived the upgrade" sh -c 'dchatctl account list --json | grep -q "\"keepme\""'
check "edited conffile kept" grep -qx 'level = "debug"' /etc/dchat/dchatd.toml
expect "still enabled after upgrade" enabled systemctl is-enabled dchatd.service

# --------------------------------------------------------------- remove, purge
say "# remove and purge"
check "apt-get remove dchat" apt-get remove -y dchat
expect "dchatd stopped by removal" inactive systemctl is-active dchatd.service
expect "dchatd.socket stopped by removal" inactive systemctl is-active dchatd.socket
check "state kept on remove" test -f /var/lib/dchat/dchat.sqlite3
check "config kept on remove" test -f /etc/dchat/dchatd.toml
check "apt-get purge dchat" apt-get purge -y dchat
check "purge removed /etc/dchat" test ! -e /etc/dchat
check "purge removed /var/lib/dchat" test ! -e /var/lib/dchat
check "purge removed the enablement links" sh -c '! ls /etc/systemd/system/*.wants/dchatd* 2>/dev/null | grep -q .'
expect "package gone" "" sh -c "dpkg-query -W -f='\${Status}' dchat 2>/dev/null | grep -v 'not-installed' || true"

# --------------------------------------------------------------- done
journalctl --no-pager -o short-precise -u dchatd -u dchatd.socket -u 'dchatd@*' >"$results/journal.txt" 2>&1
say "1..$n"
echo "done $n $failed" >"$results/status"
sync
systemctl poweroff
