#!/usr/bin/env bash
# The whole test suite, as root: unit (GoogleTest), integration (real clients against a
# real blockd), durability (SIGKILL and power cut); then unit + integration once more
# under AddressSanitizer + UndefinedBehaviorSanitizer. Exits non-zero if anything fails.
#
#   bash tests/run.sh            everything
#   BLOCKD_SKIP_SANITIZERS=1 bash tests/run.sh    skip the sanitizer pass
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
# Debian's python3 has the nbd module; a pyenv or venv python3 earlier on PATH does not.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

need=(cmake ninja g++ nbdkit nbdinfo nbdfuse nbdcopy qemu-img fio nbd-server qemu-nbd)
missing=0
for tool in "${need[@]}"; do command -v "$tool" >/dev/null || missing=1; done
[ -f /usr/include/liburing.h ] && [ -d /usr/include/boost/asio ] && [ -f /usr/include/CLI/CLI.hpp ] || missing=1
if [ "$missing" = 1 ]; then
  echo "== installing dependencies"
  bash scripts/install-deps.sh || exit 1
fi

status=0
echo "== build (warnings are errors)"
bash scripts/build.sh build || exit 1
echo "== build the skip-fence blockd (TEST ONLY): the control of tests/durability/test_fencing.py"
# Only the blockd target: the control needs nothing else, and a full second build would
# double the build time.
cmake -S "$here" -B "$here/build-nofence" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBLOCKD_WERROR=ON \
  -DBLOCKD_TEST_SKIP_FENCE=ON -DBLOCKD_TESTS=OFF >/dev/null &&
  cmake --build "$here/build-nofence" --target blockd -j "$(nproc)" || exit 1
echo "== tests: unit, integration, durability"
ctest --test-dir build --output-on-failure --timeout 900 || status=1

if [ -z "${BLOCKD_SKIP_SANITIZERS:-}" ]; then
  echo "== build with AddressSanitizer + UndefinedBehaviorSanitizer"
  bash scripts/build.sh build-asan -DBLOCKD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug || exit 1
  echo "== tests under sanitizers: unit, integration"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -L 'unit|integration' --timeout 900 || status=1
fi

if [ "$status" = 0 ]; then echo "== all tests passed"; else echo "== SOME TESTS FAILED"; fi
exit $status
