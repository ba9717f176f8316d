#!/usr/bin/env bash
# Configures and builds blockd. Usage: scripts/build.sh [BUILD_DIR] [extra cmake args...]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$here/build}
shift || true
cmake -S "$here" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBLOCKD_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
