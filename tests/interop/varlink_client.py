#!/usr/bin/env python3
"""Drive dchatd's control socket with the reference Python Varlink client.

Proves that a Varlink client written by someone else (PyPI `varlink`, the
implementation varlink.org points to) can introspect dchatd, parse every
interface definition it serves, call its methods and receive its typed
errors. Prints a JSON summary on stdout; exits non-zero on any failure.

usage: varlink_client.py SOCKET [--cli]

With --cli it also runs `python -m varlink.cli info` and `call` against the
socket, checking the package's own command-line tool works too.

Needs: pip install varlink==31.0.0
"""

import json
import os
import subprocess
import sys
import uuid

import varlink

# Served at least; interfaces added later need no edit here to pass, and
# every served one is parsed below whatever its name.
EXPECTED_INTERFACES = ["org.varlink.service", "io.dchat.Daemon", "io.dchat.Accounts", "io.dchat.Database"]


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def introspect(client, summary):
    with client.open("org.varlink.service") as service:
        info = service.GetInfo()
    check(info.get("product") == "dchatd", f"GetInfo product: {info!r}")
    check(
        set(EXPECTED_INTERFACES) <= set(info.get("interfaces", [])),
        f"GetInfo interfaces: {info.get('interfaces')!r}",
    )
    summary["info"] = info
    summary["interfaces"] = {}
    for name in info["interfaces"]:
        # get_interface() fetches the description and parses it with the
        # package's own scanner: a syntax it rejects raises here.
        iface = client.get_interface(name)
        check(iface.name == name, f"description of {name} declares {iface.name}")
        summary["interfaces"][name] = sorted(iface.members.keys())

    # An unknown interface must be the standard typed error.
    try:
        client.get_interface("io.dchat.NoSuchThing")
    except varlink.VarlinkError as e:
        check(e.error() == "org.varlink.service.InterfaceNotFound", f"unknown interface error: {e.error()}")
    else:
        raise Failure("GetInterfaceDescription of an unknown interface succeeded")


def daemon_calls(client, summary):
    # client.open() fetches and parses the interface before any call.
    with client.open("io.dchat.Daemon") as daemon:
        status = daemon.Status()
        health = daemon.Health()
    for key in ("version", "roles", "peer_id", "peers", "height"):
        check(key in status, f"Status lacks {key}: {status!r}")
    check(isinstance(status["roles"], list) and status["roles"], f"Status roles: {status['roles']!r}")
    check(health.get("live") is True and health.get("ready") is True, f"Health: {health!r}")
    summary["status"] = {k: status[k] for k in ("version", "roles", "peer_id", "peers", "height")}

    # "more": true streams Status; the first reply comes at once with
    # "continues": true. Read it and hang up.
    with client.open("io.dchat.Daemon") as daemon:
        first = next(daemon.Status(_more=True))
    check(first.get("peer_id") == status["peer_id"], f"streamed Status: {first!r}")
    summary["status_stream_first_reply"] = True
    summary["health"] = {"live": health["live"], "ready": health["ready"], "checks": len(health["checks"])}


def account_calls(client, summary):
    name = "py" + uuid.uuid4().hex[:8]
    with client.open("io.dchat.Accounts") as accounts:
        created = accounts.Create(name=name)["account"]
        check(created["name"] == name, f"Create returned {created!r}")
        check(len(created["id"]) == 64, f"Create id: {created['id']!r}")

        burner = accounts.Create(name=name + "-b", burner=True)["account"]
        check(burner["burner"] is True, f"burner Create returned {burner!r}")

        listed = accounts.List()["accounts"]
        by_name = {a["name"]: a for a in listed}
        check(name in by_name and by_name[name]["id"] == created["id"], f"List: {listed!r}")

        shown = accounts.Show(name=name)["account"]
        check(shown == created, f"Show by name: {shown!r} != {created!r}")
        shown_by_id = accounts.Show(name=created["id"])["account"]
        check(shown_by_id["name"] == name, f"Show by id: {shown_by_id!r}")

        errors = {}
        errors["NameTaken"] = expect_error(
            lambda: accounts.Create(name=name), "io.dchat.Accounts.NameTaken", {"name": name}
        )
        errors["NameTaken (other case)"] = expect_error(
            lambda: accounts.Create(name=name.upper()), "io.dchat.Accounts.NameTaken", None
        )
        errors["NotFound"] = expect_error(
            lambda: accounts.Show(name="nobody-" + name), "io.dchat.Accounts.NotFound", None
        )
        errors["InvalidName"] = expect_error(
            lambda: accounts.Create(name="bad name"), "io.dchat.Accounts.InvalidName", None
        )
    summary["accounts"] = {"created": created["id"], "listed": len(listed), "errors": errors}


def expect_error(call, name, parameters):
    try:
        got = call()
    except varlink.VarlinkError as e:
        check(e.error() == name, f"expected {name}, got {e.error()} {e.parameters()!r}")
        if parameters is not None:
            check(e.parameters() == parameters, f"{name} parameters: {e.parameters()!r}")
        return e.parameters()
    raise Failure(f"expected {name}, got a reply: {got!r}")


def cli_calls(socket, summary):
    """The package's own CLI: `info` and a `call`, both by address."""
    address = f"unix:{socket}"
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "varlink.cli", *args], capture_output=True, text=True, timeout=30
    )
    info = run("info", address)
    check(info.returncode == 0, f"varlink.cli info: rc {info.returncode}: {info.stderr.strip()}")
    check("io.dchat.Daemon" in info.stdout, f"varlink.cli info output: {info.stdout!r}")
    call = run("call", f"{address}/io.dchat.Daemon.Status", "{}")
    # The CLI prints remote errors on stderr but still exits 0: check both.
    check(call.returncode == 0 and not call.stderr.strip(), f"varlink.cli call: rc {call.returncode}: {call.stderr.strip()}")
    reply = json.loads(call.stdout)
    check("peer_id" in reply, f"varlink.cli call output: {call.stdout!r}")
    helped = run("help", f"{address}/io.dchat.Accounts")
    check(helped.returncode == 0 and "method Create" in helped.stdout, f"varlink.cli help: {helped.stderr.strip()}")
    summary["cli"] = {"info": True, "call_status_peer_id": reply["peer_id"], "help": True}


def main(argv):
    if len(argv) < 2 or argv[1].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    socket = argv[1]
    summary = {"socket": socket, "varlink_module": getattr(varlink, "__file__", "?"), "ok": False}
    try:
        client = varlink.Client(address=f"unix:{socket}")
        introspect(client, summary)
        daemon_calls(client, summary)
        account_calls(client, summary)
        if "--cli" in argv[2:]:
            cli_calls(socket, summary)
        summary["ok"] = True
    except Failure as e:
        summary["failure"] = str(e)
    except (varlink.VarlinkError, OSError, ValueError, KeyError, TypeError) as e:
        summary["failure"] = f"{type(e).__name__}: {e}"
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
