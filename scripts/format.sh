#!/usr/bin/env bash
# Formats the C++ sources with clang-format (.clang-format, Google style).
#   scripts/format.sh           rewrite files in place
#   scripts/format.sh --check   list unformatted files and exit 1 (a CTest test)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v clang-format >/dev/null || { echo "format.sh: clang-format is not installed (scripts/install-deps.sh installs it)" >&2; exit 1; }
# Tracked files and new ones not yet added (not the ignored: build trees),
# so a new file is formatted before its first commit; a tracked file
# deleted in the worktree is skipped.
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cc' '*.h' |
  sort -u | while IFS= read -r f; do [ -f "$f" ] && printf '%s\n' "$f"; done)
if [ "${1:-}" = "--check" ]; then
  bad=0
  for f in "${files[@]}"; do
    if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
      echo "not formatted: $f (run scripts/format.sh)"
      bad=1
    fi
  done
  [ "$bad" -eq 0 ] && echo "format: ${#files[@]} files formatted"
  exit "$bad"
fi
clang-format -i "${files[@]}"
