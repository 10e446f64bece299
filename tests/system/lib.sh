# Shared by the system-test scripts (sourced, not run).

# The workspace root, whichever script sourced this.
SYSTEM_TEST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

step() { printf '\n==> %s\n' "$*"; }
die() { echo "FAIL: $*" >&2; exit 1; }

# Debian packages the system tests need, as "command:package" pairs. A
# missing command is installed; one that cannot be installed fails the run
# (a check that silently does not run is worse than a red build).
SYSTEM_TEST_PREREQS=(
    debootstrap:debootstrap
    systemd-nspawn:systemd-container
    systemd-analyze:systemd
    dpkg-deb:dpkg
    dpkg-shlibdeps:dpkg-dev
    rpmbuild:rpm
    rpmlint:rpmlint
    lintian:lintian
    mandoc:mandoc
    strip:binutils
    zsh:zsh
    fish:fish
    bash:bash
    /bin/kill:procps
    pgrep:procps
)

require_root() {
    [ "$(id -u)" -eq 0 ] || die "the system tests need root (debootstrap, systemd-nspawn); run them as root"
}

# Installs whatever of SYSTEM_TEST_PREREQS is missing.
install_prereqs() {
    local need=() pair cmd pkg
    for pair in "${SYSTEM_TEST_PREREQS[@]}"; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
    done
    if [ ${#need[@]} -gt 0 ]; then
        step "installing Debian packages: ${need[*]}"
        apt-get update -qq || die "apt-get update failed; cannot install ${need[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" \
            || die "cannot install ${need[*]}"
    fi
    for pair in "${SYSTEM_TEST_PREREQS[@]}"; do
        cmd=${pair%%:*}
        command -v "$cmd" >/dev/null 2>&1 || die "prerequisite $cmd (package ${pair#*:}) is still missing"
    done
}

# The package files build-packages makes for release $1.
package_version() { cargo pkgid -p dchatd --manifest-path "$SYSTEM_TEST_ROOT/Cargo.toml" | sed 's/.*[#@]//'; }
deb_path() { echo "$SYSTEM_TEST_ROOT/target/packages/dchat_$(package_version)-$1_$(dpkg --print-architecture).deb"; }
rpm_path() { echo "$SYSTEM_TEST_ROOT/target/packages/dchat-$(package_version)-$1.$(rpm --eval '%{_arch}').rpm"; }
