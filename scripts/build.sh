#!/usr/bin/env bash
# Configures and builds wavefs.
#   scripts/build.sh                 -> build/        (RelWithDebInfo)
#   scripts/build.sh --asan          -> build-asan/   (-DWAVEFS_SANITIZE=ON)
#   scripts/build.sh --build-dir DIR -> DIR           (any of the above)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
  echo "usage: scripts/build.sh [--asan] [--build-dir DIR] [--build-type TYPE]"
}

asan=0
build_dir=""
build_type=RelWithDebInfo
while [ "$#" -gt 0 ]; do
  case "$1" in
    --asan) asan=1 ;;
    --build-dir) [ "$#" -ge 2 ] || { echo "build.sh: --build-dir needs a value" >&2; exit 2; }
                 build_dir=$2; shift ;;
    --build-type) [ "$#" -ge 2 ] || { echo "build.sh: --build-type needs a value" >&2; exit 2; }
                  build_type=$2; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build.sh: unknown argument '$1' ($(usage))" >&2; exit 2 ;;
  esac
  shift
done

cmake_args=(-DCMAKE_BUILD_TYPE="$build_type")
if [ "$asan" -eq 1 ]; then
  cmake_args+=(-DWAVEFS_SANITIZE=ON)
  : "${build_dir:=build-asan}"
else
  cmake_args+=(-DWAVEFS_SANITIZE=OFF)
  : "${build_dir:=build}"
fi
case "$build_dir" in
  /*) ;;
  *) build_dir=$ROOT/$build_dir ;;
esac

jobs=$(nproc 2>/dev/null || echo 2)
echo "build.sh: configuring $build_dir (${cmake_args[*]})"
mkdir -p "$build_dir"
cmake -S "$ROOT" -B "$build_dir" "${cmake_args[@]}" >"$build_dir/configure.log" 2>&1 || {
  cat "$build_dir/configure.log" >&2
  echo "build.sh: cmake configure failed (log: $build_dir/configure.log)" >&2
  exit 1
}
echo "build.sh: building with -j$jobs"
cmake --build "$build_dir" -j"$jobs"
echo "build.sh: built $build_dir"
