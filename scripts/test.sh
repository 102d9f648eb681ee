#!/usr/bin/env bash
# The README's test command. Installs what the tests need (scripts/install_deps.sh test: Debian
# packages, tiktoken in build/venv-tiktoken), then runs `make test` on all cores: builds every
# binary, regenerates the PyTorch reference dumps and runs every check. Ends "N passed, N failed";
# exits non-zero if anything failed. Arguments go to make (e.g. PRECISION=..., ARCH=...).
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
-h | --help)
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac
bash scripts/install_deps.sh test
export TOKENIZER_PYTHON=${TOKENIZER_PYTHON:-$PWD/build/venv-tiktoken/bin/python}
exec make --no-print-directory -j"$(nproc)" test "$@"
