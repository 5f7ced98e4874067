#!/usr/bin/env bash
# Installs the Debian packages given as arguments that are not installed yet.
set -euo pipefail

# The system service of each package whose daemon the tests and the demo run themselves
# (nothing for the other packages). BIND's package is `bind9`, its service `named` (`bind9` is an alias).
service_of() {
    case $1 in
        knot | unbound | mosquitto) echo "$1.service" ;;
        bind9) echo named.service ;;
    esac
}

missing=()
for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]})); then
    if [[ $(id -u) != 0 ]]; then
        echo "install-deps: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
        exit 1
    fi
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The tests and the demo start their own knotd, named, unbound and mosquitto: the packages'
    # system services are neither started by the installation (policy-rc.d refuses every start
    # while it runs, unless the host has a policy of its own) nor left enabled.
    own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 0755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    trap '[[ -n $own_policy ]] && rm -f /usr/sbin/policy-rc.d' EXIT
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    for pkg in "${missing[@]}"; do
        # Installed now: stopped if it started all the same.
        service=$(service_of "$pkg")
        if [[ -n $service ]]; then
            systemctl stop "$service" >/dev/null 2>&1 || true
        fi
    done
fi

# The services of the test daemons are left disabled: those just installed, and those an
# earlier set-up left enabled without running them. One that runs is the host's own: untouched.
# (`systemctl disable` works without a running systemd: it removes the links.)
for pkg in "$@"; do
    service=$(service_of "$pkg")
    if [[ -z $service ]]; then
        continue
    fi
    if [[ $(systemctl is-enabled "$service" 2>/dev/null) == enabled ]] \
        && ! systemctl is-active --quiet "$service" 2>/dev/null; then
        if [[ $(id -u) == 0 ]] && systemctl disable "$service" >/dev/null 2>&1; then
            echo "install-deps: $service disabled (the tests and the demo run their own ${service%.service})"
        else
            echo "install-deps: $service is enabled; the project does not need it: systemctl disable $service" >&2
        fi
    fi
done

# `make test` runs `cargo fmt` and `cargo clippy`: their components, when rustup manages the
# toolchain and they are missing.
if command -v rustup >/dev/null; then
    for component in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
            echo "install-deps: adding the $component component"
            rustup component add "$component"
        fi
    done
fi

if ! command -v cargo >/dev/null; then
    echo "install-deps: cargo not found: install a Rust toolchain (1.85 or newer)" >&2
    exit 1
fi
# pcscd instances of the tests mount a private tmpfs here.
mkdir -p /run/pcscd 2>/dev/null || true
