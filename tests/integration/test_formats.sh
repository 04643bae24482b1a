#!/usr/bin/env bash
# Every chunk format works: stores made by `wavefs init` (format 4 for a
# local store) and by
# `wavefs init --format 1|2|3|4` take files in (new ones and an overwrite
# of an existing one), name every object by the hash of its bytes (SHA-256
# in format 3, BLAKE2b-256 in formats 1 and 2, SHA-256 of its trailer and
# tags in format 4, so anyone can check a store without its key), and read
# the files back equal, whole and in pieces, after a remount. A format that
# does not exist is refused with one line.
source "$(dirname "$0")/lib.sh"

make_random "$SRC/f" 10M formats-f
make_random "$SRC/g" 5M formats-g

rc=0
wfs init "$T/bad-store" --format 5 >"$T/bad.out" 2>&1 || rc=$?
expect_eq "init --format 5 exits 2 (usage)" 2 "$rc"
expect_eq "init --format 5 says why in one line" 1 "$(wc -l <"$T/bad.out")"
grep -q -- "--format" "$T/bad.out" || fail "the error does not name --format: $(cat "$T/bad.out")"
[ ! -e "$T/bad-store" ] || fail "a refused init left $T/bad-store behind"

for fmt in default 1 2 3 4; do
  STORE=$T/store-$fmt
  if [ "$fmt" = default ]; then
    wfs_init
    want=4
  else
    wfs_init --format "$fmt"
    want=$fmt
  fi
  conf=$(store_dir)/wavefs-store.conf
  grep -qx "format=$want" "$conf" || fail "init ($fmt) wrote $(head -1 "$conf")"
  grep -q "format $want" "$T/init.out" || fail "init ($fmt) did not report format $want: $(cat "$T/init.out")"

  wfs_mount
  check "format $fmt: cp a new file" cp "$SRC/f" "$MNT/f"
  check "format $fmt: cp another" cp "$SRC/g" "$MNT/g"
  check "format $fmt: cp over an existing, longer file" cp "$SRC/g" "$MNT/f"
  check "format $fmt: cp a third" cp "$SRC/f" "$MNT/f2"
  wfs_unmount

  # Full chunks: plaintext + one 16-byte tag (format 1) or + 16 bytes per
  # 64 KiB segment (formats 2 and 3), and a 32-byte trailer (format 4).
  # Distinct ones: two of f, one of g.
  case $want in
    1) full=4194320 ;;
    4) full=4195360 ;;
    *) full=4195328 ;;
  esac
  expect_eq "format $fmt: full-chunk objects of ${full} bytes" 3 \
    "$(find "$(store_dir)/chunks" -type f -size "${full}c" | wc -l)"
  objects=0
  while read -r obj; do
    sum=$(object_hash "$obj" "$want")
    [ "$sum" = "$(basename "$obj")" ] || fail "format $fmt: object $(basename "$obj") hashes to $sum"
    objects=$((objects + 1))
  done < <(find "$(store_dir)/chunks" -type f)
  expect_eq "format $fmt: objects, each named by its hash" 5 "$objects"

  wfs_mount
  drop_caches
  check "format $fmt: the overwritten file equals its new source" cmp "$SRC/g" "$MNT/f"
  check "format $fmt: g equals its source" cmp "$SRC/g" "$MNT/g"
  check "format $fmt: f2 equals its source" cmp "$SRC/f" "$MNT/f2"
  for off in 0 3 5 9; do
    dd if="$SRC/f" of="$T/want" bs=1M skip="$off" count=1 status=none
    drop_caches
    check "format $fmt: 1 MiB at ${off} MiB reads back equal" \
      bash -c "dd if='$MNT/f2' of='$T/got' bs=1M skip=$off count=1 status=none && cmp '$T/want' '$T/got'"
  done
  wfs_unmount
  grep -qx "format=$want" "$conf" || fail "mounting changed the store's format"
  pass "format $fmt works and is still format $want"
done
