#!/usr/bin/env bash
# ensure-chromium.sh makes sure Debian's chromium is installed for the browser tests.
#
# It does nothing when /usr/bin/chromium exists. Otherwise it installs the `chromium`
# package with apt-get, non-interactively; that needs root (or sudo without a password).
# It never touches any other package or source list.
set -euo pipefail

readonly chromium=/usr/bin/chromium

if [[ -x "$chromium" ]]; then
	exit 0
fi

echo "ensure-chromium: $chromium is missing; installing Debian's chromium package" >&2

sudo=()
if [[ "$(id -u)" -ne 0 ]]; then
	if ! command -v sudo >/dev/null; then
		echo "ensure-chromium: not root and no sudo: install chromium by hand" >&2
		exit 1
	fi
	sudo=(sudo -n)
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update
"${sudo[@]}" apt-get install -y chromium

if [[ ! -x "$chromium" ]]; then
	echo "ensure-chromium: installed the package but $chromium is still missing" >&2
	exit 1
fi
