#!/usr/bin/env bash
# Unpacks cudnn-frontend's C++ headers (header-only; not part of the CUDA toolkit) into
# DIR/include (default build/cudnn-frontend) from PyPI's nvidia-cudnn-frontend wheel, pinned by
# version and SHA-256, so every machine compiles llmc/cudnn_att.cpp against the same API. The
# Makefile runs it before the first nvcc BF16 build; it needs python3 and access to PyPI (pip's
# proxy settings apply). The wheel's Python extension is not used.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.16.0
WHEEL=nvidia_cudnn_frontend-$VERSION-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
SHA256=5c4a8fc573d85a86e08b15d9bf37f729e2487298781867a492a59cde6ac295e2
DEST=${1:-build/cudnn-frontend}
[ -f "$DEST/include/cudnn_frontend.h" ] && exit 0
fail() {
    echo "error: fetch_cudnn_frontend: $*" >&2
    exit 1
}
command -v python3 >/dev/null || fail "python3 not found (apt-get install python3)"
# any pip will do: the system's, else one in a venv of our own under build/
PIP=(python3 -m pip)
if ! python3 -m pip --version >/dev/null 2>&1; then
    [ -x build/venv-pip/bin/pip ] || python3 -m venv build/venv-pip >/dev/null ||
        fail "python3 has no pip and no venv (apt-get install python3-venv)"
    PIP=(build/venv-pip/bin/pip)
fi
DOWNLOAD=$(mktemp -d)
trap 'rm -rf "$DOWNLOAD"' EXIT
# the wheel for one fixed platform and Python: the headers are the same in all of them
"${PIP[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
    -d "$DOWNLOAD" "nvidia-cudnn-frontend==$VERSION" ||
    fail "pip download nvidia-cudnn-frontend==$VERSION failed (no access to PyPI?)"
[ -f "$DOWNLOAD/$WHEEL" ] || fail "pip did not download $WHEEL"
echo "$SHA256  $DOWNLOAD/$WHEEL" | sha256sum --check --quiet ||
    fail "$WHEEL: SHA-256 differs from the pinned $SHA256"
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
python3 - "$DOWNLOAD/$WHEEL" "$DEST.tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    members = [m for m in wheel.namelist() if m.startswith("include/") and ".." not in m]
    wheel.extractall(sys.argv[2], members)
PY
[ -f "$DEST.tmp/include/cudnn_frontend.h" ] || fail "$WHEEL has no include/cudnn_frontend.h"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "cudnn-frontend $VERSION headers in $DEST/include"
