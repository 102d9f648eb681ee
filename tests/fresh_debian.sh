#!/usr/bin/env bash
# Runs the README's two quick-start commands, as written, on a fresh minimal Debian 12 (a
# debootstrap chroot), to check that they do all the set-up themselves. Not part of `make test`:
# it needs root, a Debian mirror and ~2 GB of disk, and takes 15-30 minutes.
#
#   sudo bash tests/fresh_debian.sh DIR [MIRROR]
#
# DIR: a new directory for the chroot (a minbase bookworm there is reused if present, as
# DIR/base, and copied for each check). MIRROR: default the first URI in
# /etc/apt/sources.list.d/debian.sources, else http://deb.debian.org/debian. The committed HEAD is
# cloned into DIR/root/src/llmc with ../shared beside it; the logs go to DIR/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=${1:?usage: tests/fresh_debian.sh DIR [MIRROR]}
MIRROR=${2:-$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" -eq 0 ] || { echo "error: tests/fresh_debian.sh needs root (debootstrap, chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
mkdir -p "$DIR"
DIR=$(realpath "$DIR")
if [ ! -x "$DIR/base/bin/bash" ]; then
    echo "debootstrap --variant=minbase bookworm $DIR/base $MIRROR"
    debootstrap --variant=minbase bookworm "$DIR/base" "$MIRROR" >"$DIR/debootstrap.log" 2>&1
fi
NEW=$DIR/root
rm -rf "$NEW"
cp -a "$DIR/base" "$NEW"
mkdir -p "$NEW/src"
git clone -q "$ROOT" "$NEW/src/llmc"
[ -d "$ROOT/../shared" ] && cp -a "$ROOT/../shared" "$NEW/src/shared"
# the network's set-up, as any machine on it has: DNS, and where PyPI is reached through a proxy
# with its own CA, pip's configuration and that CA bundle (nothing of the project's)
cp /etc/resolv.conf "$NEW/etc/resolv.conf"
if [ -f /etc/pip.conf ]; then
    cp /etc/pip.conf "$NEW/etc/pip.conf"
    bundle=$(sed -n 's/^ *cert *= *//p' /etc/pip.conf | head -n 1)
    if [ -n "$bundle" ] && [ -f "$bundle" ]; then
        mkdir -p "$NEW$(dirname "$bundle")"
        cp "$bundle" "$NEW$bundle"
    fi
    # (and the local CAs themselves: installing ca-certificates there rebuilds the bundle from them)
    if [ -d /usr/local/share/ca-certificates ]; then
        mkdir -p "$NEW/usr/local/share/ca-certificates"
        cp -r /usr/local/share/ca-certificates/. "$NEW/usr/local/share/ca-certificates/"
    fi
fi
mount -t proc proc "$NEW/proc"
mount --rbind /dev "$NEW/dev"
mount --make-rslave "$NEW/dev"
trap 'umount -R "$NEW/dev" 2>/dev/null; umount "$NEW/proc" 2>/dev/null' EXIT

# the README's two commands, each in a clean environment
status=0
for command in "bash scripts/quickstart.sh" "bash scripts/test.sh"; do
    log=$DIR/$(echo "$command" | tr -c 'a-z\n' _ | sed 's/__*/_/g').log
    echo "== $command (log: $log)"
    start=$(date +%s)
    if chroot "$NEW" /usr/bin/env -i HOME=/root TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        bash -c "cd /src/llmc && $command" >"$log" 2>&1; then
        result=ok
    else
        result="FAILED (exit $?)"
        status=1
    fi
    elapsed=$(($(date +%s) - start))
    echo "   $result in $((elapsed / 60))m$(printf '%02d' $((elapsed % 60)))s; last lines:"
    tail -n 4 "$log" | sed 's/^/   | /'
done
exit $status
