#!/usr/bin/env bash
# Installs what llmc needs on a Debian/Ubuntu machine, and nothing when it is all there.
#
#   bash scripts/install_deps.sh quickstart   # build and train on the CPU: compiler, make, json-c
#   bash scripts/install_deps.sh test         # everything `make test` calls, plus tiktoken and
#                                             # transformers in venvs
#
# Checks each Debian package with `dpkg -s`; if some are missing it says which and why, runs
# `apt-get update` once and `apt-get install --no-install-recommends` for them (through sudo when
# not root). Python packages that only the tests need (tiktoken, for the tokenizer's comparisons;
# transformers and safetensors, for the HuggingFace ones) go into venvs under build/
# (build/venv-tiktoken, build/venv-hf), never into the system's Python.
# LLMC_SKIP_DEPS=1 skips it all (you manage the packages yourself).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
}
case "${1:-}" in
quickstart | test) purpose=$1 ;;
-h | --help)
    usage
    exit 0
    ;;
*)
    echo "error: scripts/install_deps.sh: expected 'quickstart' or 'test', got '${1:-}'" >&2
    exit 2
    ;;
esac
if [ "${LLMC_SKIP_DEPS:-0}" = 1 ]; then
    echo "deps: LLMC_SKIP_DEPS=1: not checking packages"
    exit 0
fi

# package|why, in the order apt gets them
PACKAGES=(
    "build-essential|gcc and make build every binary"
    "pkg-config|finds json-c's flags"
    "libjson-c-dev|the tokenizer reads encoder.json and JSONL"
)
# the data falls back to a download (dev/data/tinyshakespeare.sh) when ../shared/data is absent
if [ ! -f ../shared/data/tinyshakespeare.txt ] && [ ! -f "${LLMC_DATA_DIR:-/nonexistent}/tinyshakespeare.txt" ]; then
    PACKAGES+=("curl|downloads tinyshakespeare and GPT-2's BPE files" "ca-certificates|HTTPS for curl")
fi
if [ "$purpose" = test ]; then
    PACKAGES+=(
        "python3-torch|the PyTorch reference dumps (scripts/train_gpt2.py), CPU-only"
        "python3-numpy|the reference scripts' arrays"
        # OpenBLAS: Debian's torch ran its matmuls at about 4 GFLOP/s on the reference BLAS, 269 with it
        "libopenblas0-pthread|a fast BLAS for that PyTorch"
        "python3-venv|a venv under build/ for tiktoken"
        "libpcre2-dev|the pre-tokenizer benchmark against PCRE2"
        "libopenmpi-dev|data-parallel tests: NCCL emulated over MPI"
        "openmpi-bin|mpirun, for those tests"
        "procps|pgrep, to kill one rank in the failure test"
        # (make SANITIZE=1's ASan and UBSan runtimes for gcc come with build-essential)
        "clang|builds the libFuzzer harnesses of tests/fuzz (make fuzz; make test runs each 20 s)"
        "libclang-rt-dev|libFuzzer and clang's sanitizer runtimes, for those harnesses"
    )
fi

missing=()
reasons=()
if command -v dpkg >/dev/null 2>&1; then
    for entry in "${PACKAGES[@]}"; do
        pkg=${entry%%|*}
        if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
            missing+=("$pkg")
            reasons+=("  $pkg: ${entry#*|}")
        fi
    done
else
    echo "deps: no dpkg (not Debian/Ubuntu): not checking; llmc needs gcc, make, pkg-config, json-c" \
        "$([ "$purpose" = test ] && echo ", PyTorch, numpy, OpenMPI, pgrep, a Python venv, clang with libFuzzer")"
fi

if [ "${#missing[@]}" -gt 0 ]; then
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            echo "error: missing Debian packages (${missing[*]}) and not root with no sudo: run as root: apt-get install --no-install-recommends ${missing[*]}" >&2
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: missing Debian packages (${missing[*]}) and no apt-get to install them" >&2
        exit 1
    fi
    mkdir -p build
    echo "deps: installing ${#missing[@]} Debian package(s) for '$purpose'${SUDO:+ (with sudo)}:"
    printf '%s\n' "${reasons[@]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq || {
        echo "error: apt-get update failed (network? apt sources?): cannot install ${missing[*]}" >&2
        exit 1
    }
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >build/apt-install.log 2>&1 || {
        tail -n 20 build/apt-install.log >&2
        echo "error: apt-get install ${missing[*]} failed (full log: $PWD/build/apt-install.log)" >&2
        exit 1
    }
    rm -f build/apt-install.log
    echo "deps: installed ${missing[*]}"
fi

if [ "$purpose" = test ]; then
    # tiktoken and regex pinned: a new release of either (another Unicode version, say) must not
    # change what our tokenizer tests compare against
    VENV=build/venv-tiktoken
    REQUIREMENTS="tiktoken==0.14.0 regex==2026.12.2"
    if ! "$VENV/bin/python" -c "import tiktoken, regex" >/dev/null 2>&1 ||
        [ "$(cat "$VENV/requirements.txt" 2>/dev/null)" != "$REQUIREMENTS" ]; then
        echo "deps: creating $VENV with $REQUIREMENTS (PyPI), for the tokenizer's comparisons"
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        # shellcheck disable=SC2086
        "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQUIREMENTS || {
            echo "error: pip install $REQUIREMENTS into $VENV failed (no access to PyPI? behind a proxy: PIP_INDEX_URL, PIP_CERT)" >&2
            exit 1
        }
        echo "$REQUIREMENTS" >"$VENV/requirements.txt"
    fi
    # transformers and safetensors for the HuggingFace tests (tests/test_hf.sh), pinned; the venv
    # sees the system's packages, so Debian's python3-torch serves (no torch download).
    # (transformers 4.44 runs on Debian 12's torch 1.13)
    VENV=build/venv-hf
    REQUIREMENTS="transformers==4.44.2 safetensors==0.4.5"
    if ! "$VENV/bin/python" -c "import transformers, safetensors, torch" >/dev/null 2>&1 ||
        [ "$(cat "$VENV/requirements.txt" 2>/dev/null)" != "$REQUIREMENTS" ]; then
        echo "deps: creating $VENV with $REQUIREMENTS (PyPI; torch from Debian), for the HuggingFace tests"
        rm -rf "$VENV"
        /usr/bin/python3 -m venv --system-site-packages "$VENV"
        # shellcheck disable=SC2086
        "$VENV/bin/pip" install --quiet --disable-pip-version-check $REQUIREMENTS || {
            echo "error: pip install $REQUIREMENTS into $VENV failed (no access to PyPI? behind a proxy: PIP_INDEX_URL, PIP_CERT)" >&2
            exit 1
        }
        echo "$REQUIREMENTS" >"$VENV/requirements.txt"
    fi
fi
echo "deps: everything for '$purpose' is installed"
