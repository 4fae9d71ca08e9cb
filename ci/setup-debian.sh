#!/bin/bash
# Install the Debian packages listed in ci/debian-packages.txt that are not installed yet.
# Quick when nothing is missing: one dpkg-query, no apt-get.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^\s*$/d' "$here/debian-packages.txt")
missing=()
for p in "${wanted[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    echo "debian packages: all ${#wanted[@]} present"
    exit 0
fi
if [[ $(id -u) != 0 ]]; then
    echo "error: missing Debian packages: ${missing[*]}" >&2
    echo "(run 'make setup' as root, or: apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "debian packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps package scripts from starting daemons; tests start their own.
policy=/usr/sbin/policy-rc.d
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}"
