#!/usr/bin/env bash
# Installs the packages, builds wavefs twice (normal and ASan+UBSan) and runs
# the whole test suite in both builds. Exits non-zero if anything failed.
#
#   scripts/test.sh                 everything
#   scripts/test.sh --no-asan       only the normal build
#   WAVEFS_ASAN_CTEST_ARGS="-LE integration" scripts/test.sh
#                                   pass other ctest filters to the ASan run
#                                   (default: all tests except the memory one,
#                                   whose RSS bounds do not hold under ASan)
#   WAVEFS_BUILD_DIR / WAVEFS_ASAN_BUILD_DIR   other build dirs
#                                   (default build/ and build-asan/)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

asan=1
for arg in "$@"; do
  case "$arg" in
    --no-asan) asan=0 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

start=$(date +%s)
total_pass=0
total_fail=0
total_skip=0
problems=()

section() { printf '\n==== %s ====\n' "$*"; }

# run_ctest NAME BUILD_DIR [CTEST ARGS...]
run_ctest() {
  local name=$1 dir=$2 log rc=0 line passed failed total skipped
  shift 2
  log=$dir/ctest-summary.log
  section "ctest ($name): ctest --output-on-failure $*"
  # --timeout: the default for tests without their own TIMEOUT property, so
  # that a hung unit test cannot eat CI's whole budget.
  ctest --test-dir "$dir" --output-on-failure --no-tests=error --timeout 600 "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # "100% tests passed, 0 tests failed out of 12"
  line=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
  if [ -z "$line" ]; then
    total_fail=$((total_fail + 1))
    problems+=("$name: ctest exited $rc without a test summary")
    return 0
  fi
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$line")
  total=$(sed -E 's/.*out of ([0-9]+).*/\1/' <<<"$line")
  skipped=$(grep -c -E '\*\*\*Skipped' "$log" || true)
  passed=$((total - failed - skipped))
  [ "$passed" -lt 0 ] && passed=0
  total_pass=$((total_pass + passed))
  total_fail=$((total_fail + failed))
  total_skip=$((total_skip + skipped))
  if [ "$failed" -gt 0 ]; then
    problems+=("$name: $failed of $total test(s) failed")
    # CI shows only the head and the tail of this output: repeat what
    # failed inside the failing tests (gtest's failed test names and the
    # lines of each failed check) here, so that they reach the summary.
    local detail
    while IFS= read -r detail; do
      problems+=("$name:   $detail")
    done < <(grep -E -A4 '^[^ ]+:[0-9]+: Failure$' "$log" | grep -v -E '^--$' |
      head -n 40)
    while IFS= read -r detail; do
      problems+=("$name:   $detail")
    done < <(grep -E '^\[  FAILED  \] [A-Za-z_0-9]+\.' "$log" | sort -u | head -n 20)
  elif [ "$rc" -ne 0 ]; then
    total_fail=$((total_fail + 1))
    problems+=("$name: ctest exited $rc")
  fi
  return 0
}

section "install dependencies"
if ! scripts/install-deps.sh; then
  echo "test.sh: installing dependencies failed" >&2
  echo "summary: 0 passed, 1 failed"
  exit 1
fi
if [ ! -c /dev/fuse ]; then
  modprobe fuse 2>/dev/null || true
fi

# An earlier run killed in the middle (a CI timeout, ^C, a lost session)
# can leave an integration test's mount behind with its daemon gone. Such a
# mount answers ENOTCONN to everything, and tests that look at all mounts
# (`wavefs unshare` searches every running mount) would trip over it. Take
# down only those: fuse mounts under this runner's temp parent whose
# directory no longer answers; a live mount is never touched.
section "stale test mounts"
it_parent=$(cd "${WAVEFS_IT_TMP:-/var/tmp}" 2>/dev/null && pwd -P)
while read -r _dev mnt fstype _rest; do
  case "$fstype" in fuse | fuse.*) ;; *) continue ;; esac
  mnt=$(printf '%b' "$mnt") # /proc/mounts escapes spaces as \040
  case "$mnt" in "$it_parent"/wavefs-it.*) ;; *) continue ;; esac
  # A daemon that is only stopped (SIGSTOP) would hang stat: give up after
  # 5 s and leave that mount alone (exit 124/137 is not "gone").
  timeout -s KILL 5 stat "$mnt" >/dev/null 2>&1
  if [ $? -eq 1 ]; then
    echo "test.sh: unmounting $mnt (its daemon is gone)"
    fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
  fi
done </proc/mounts

# One Ceph RGW on 127.0.0.1 for every S3 test of both runs (the S3 tests
# would otherwise start one each, 4-8 s apiece); destroyed at the end.
section "Ceph RGW for the S3 tests"
RGW_DIR=$(mktemp -d "${WAVEFS_IT_TMP:-/var/tmp}/wavefs-test-rgw.XXXXXX")
trap 'scripts/ceph-rgw.sh destroy "$RGW_DIR" >/dev/null 2>&1; rm -rf "$RGW_DIR"' EXIT
if rgw_env=$(scripts/ceph-rgw.sh start "$RGW_DIR"); then
  eval "$rgw_env"
  export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION WAVEFS_S3_ENDPOINT \
    WAVEFS_S3_TLS_ENDPOINT WAVEFS_S3_CA_FILE
  export WAVEFS_RGW_DIR=$RGW_DIR
  echo "test.sh: S3 tests use $WAVEFS_S3_ENDPOINT"
else
  # The S3 tests then try to start their own and fail: never skipped.
  problems+=("Ceph RGW did not start (scripts/ceph-rgw.sh start $RGW_DIR)")
  total_fail=$((total_fail + 1))
fi

BUILD_DIR=${WAVEFS_BUILD_DIR:-build}
ASAN_DIR=${WAVEFS_ASAN_BUILD_DIR:-build-asan}

section "build (normal)"
if scripts/build.sh --build-dir "$BUILD_DIR"; then
  run_ctest normal "$BUILD_DIR"
else
  problems+=("normal build failed")
  total_fail=$((total_fail + 1))
fi

if [ "$asan" -eq 1 ]; then
  section "build (ASan + UBSan)"
  if scripts/build.sh --asan --build-dir "$ASAN_DIR"; then
    # shellcheck disable=SC2086  # word splitting of the filter is intended
    run_ctest asan "$ASAN_DIR" ${WAVEFS_ASAN_CTEST_ARGS:--LE memory}
  else
    problems+=("ASan build failed")
    total_fail=$((total_fail + 1))
  fi
fi

secs=$(( $(date +%s) - start ))
section "result"
if [ "${#problems[@]}" -gt 0 ]; then
  printf 'test.sh: %s\n' "${problems[@]}"
fi
printf 'test.sh: finished in %dm%02ds\n' $((secs / 60)) $((secs % 60))
echo "summary: $total_pass passed, $total_fail failed, $total_skip skipped"
[ "${#problems[@]}" -eq 0 ] && [ "$total_fail" -eq 0 ]
