# shellcheck shell=bash
# The --workloads mode of scripts/bench.sh, sourced by it (it uses bench.sh's
# helpers: log, die, now, secs, record, med, wfs_mount, gc_mount, ...).
# Everyday work beyond big sequential files (issue 11), each system on a
# fresh target per run, rows run one after another in one mount:
#
#   ext4       a plain directory on the bench's disk: the floor
#   passthrough  libfuse's do-nothing passthrough_ll over a directory, with
#              xattrs: the floor of any FUSE filesystem with xattrs (every
#              request a round trip)
#   wavefs     `wavefs mount` with its defaults
#   wavefs-wb  `wavefs mount --writeback-cache`
#   gocryptfs  (when installed; --install-peers installs it and fio)
#
# Rows (the time the command takes, i.e. what the user waits for; the
# flush to the store afterwards is not counted, for any system):
#   tar        `tar -xf` of /usr/include (a tarball made once)
#   rsync      `rsync -a` of /usr/share/doc
#   ls         `ls -lR` of that copy (names and attributes of every entry)
#   rsync-again  `rsync -a` of /usr/share/doc once more: nothing to copy,
#              every file compared by size and mtime (an incremental backup)
#   clone      `git clone --no-hardlinks` of this repository: the median
#              of 5 clones per run (each alone is a few tenths of a second)
#   append     2000 x `echo line >> log` (each its own open and close)
#   tee        `openssl enc | tee FILE | openssl dgst`: tee writes 8 KiB at
#              a time; 2 GiB (256 MiB with --quick)
#   fio        fio randwrite, block sizes 4k-1m, 128 MiB (32 MiB with
#              --quick), crc32c verify (when fio is installed)
#   sqlite-wal, sqlite-delete
#              1000 SQLite transactions (200 with --quick), one 3 KB row
#              each, synchronous=FULL, journal_mode WAL and DELETE: a
#              database's fsync after every transaction
#   writers    8 `dd bs=1M` at once, each writing its own 256 MiB (64 MiB
#              with --quick) of incompressible data into its own file (no
#              dedup between them), every file compared after
#   rm         `rm -rf` of the tree tar made (last: ext4 without a journal
#              makes the next inode allocations pay for a deletion)
# --quick: CI-sized inputs (--quick --runs 1 takes about a minute).

WL_SYSTEMS=(ext4 passthrough wavefs wavefs-wb gocryptfs)
WL_ROWS=(tar rsync ls rsync-again clone append tee fio sqlite-wal sqlite-delete writers rm)

wl_setup_inputs() {
  WL_TAR=$DATA/usr-include.tar
  [ -s "$WL_TAR" ] || tar -C /usr -cf "$WL_TAR" include ||
    die "cannot make $WL_TAR from /usr/include"
  WL_TAR_FILES=$(tar -tf "$WL_TAR" | wc -l)
  WL_DOC_FILES=$(find /usr/share/doc | wc -l)
  WL_CLONES=5
  WL_WRITERS=8
  if [ "$QUICK" -eq 1 ]; then
    WL_WRITER_MIB=64
    WL_TEE_BYTES=$((256 << 20))
    WL_FIO_SIZE=32m
    WL_SQLITE_TXNS=200
  else
    WL_WRITER_MIB=256
    WL_TEE_BYTES=$((2 << 30))
    WL_FIO_SIZE=128m
    WL_SQLITE_TXNS=1000
  fi
  # One source of WL_WRITERS x WL_WRITER_MIB; writer i copies slice i.
  make_data "$((WL_WRITERS * WL_WRITER_MIB))M"
  WL_WRITER_SRC=$DATA/src-$((WL_WRITERS * WL_WRITER_MIB))M
}

# ext4 without a journal (this project's CI VMs) skips every inode freed in
# the last 30 s when it allocates one (fs/ext4/ialloc.c, recently_deleted),
# so a row right after a system's `rm -rf` paid for the deletion: wavefs's
# 2000 appends spent half of the daemon's samples there. wl_settle waits
# that window out after each deletion on such a filesystem.
WL_SETTLE=0
wl_detect_settle() {
  local src dev
  [ "$(findmnt -n -o FSTYPE --target "$WORK" 2>/dev/null)" = ext4 ] || return 0
  src=$(findmnt -n -o SOURCE --target "$WORK" 2>/dev/null) || return 0
  dev=$(basename "$(readlink -f "$src")")
  if [ "$(cat "/sys/fs/ext4/$dev/journal_task" 2>/dev/null)" = "<none>" ]; then
    WL_SETTLE=31
    log "$WORK is on ext4 without a journal: waiting ${WL_SETTLE} s after each deletion"
  fi
}
wl_settle() { [ "$WL_SETTLE" -eq 0 ] || sleep "$WL_SETTLE"; }

# wl_time SYS ROW CMD...: runs CMD, records its wall time (dies on failure).
wl_time() {
  local sys=$1 row=$2 t0 t1
  shift 2
  drop_caches
  t0=$(now)
  "$@" >>"$LOGS/workloads-$sys.log" 2>&1 || die "$sys: $row failed (see $LOGS/workloads-$sys.log)"
  t1=$(now)
  record W "$sys" "$row" "$(secs "$t0" "$t1")"
}

wl_append() {
  local i
  for i in $(seq 1 2000); do echo "line $i of a log" >>"$1/log"; done
}

wl_tee() {
  local sum
  sum=$(openssl enc -aes-256-ctr -K "$(printf 'wavefs-tee' | sha256sum | cut -c1-64)" \
          -iv 00000000000000000000000000000000 -in /dev/zero 2>/dev/null |
        head -c "$WL_TEE_BYTES" | tee "$1/tee" | openssl dgst -sha256 -r | cut -d' ' -f1)
  [ -n "$sum" ] || return 1
  [ "$(openssl dgst -sha256 -r <"$1/tee" | cut -d' ' -f1)" = "$sum" ]
}

wl_ls() { ls -lR "$1/doc" >/dev/null; }

# WL_WRITERS writers at once, each its own slice of the source.
wl_writers() {
  local i rc=0 pids=()
  for i in $(seq 0 $((WL_WRITERS - 1))); do
    dd if="$WL_WRITER_SRC" of="$1/writer$i" bs=1M skip=$((i * WL_WRITER_MIB)) \
      count="$WL_WRITER_MIB" status=none &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  return "$rc"
}

# The writers' files equal their slices of the source.
wl_writers_check() {
  local i
  for i in $(seq 0 $((WL_WRITERS - 1))); do
    cmp -s "$1/writer$i" <(dd if="$WL_WRITER_SRC" bs=1M skip=$((i * WL_WRITER_MIB)) \
      count="$WL_WRITER_MIB" status=none) || return 1
  done
  rm -f "$1"/writer*
}

# rsync again over an unchanged copy: fails if it finds anything to do.
wl_rsync_again() {
  local changes
  changes=$(rsync -ai /usr/share/doc/ "$1/doc/") || return 1
  [ -z "$changes" ] || { printf 'rsync found changes:\n%s\n' "$changes" | head -n 5; return 1; }
}

wl_fio() {
  fio --name=randwrite --filename="$1/fio" --rw=randwrite --bsrange=4k-1m \
    --size="$WL_FIO_SIZE" --verify=crc32c --ioengine=psync --randrepeat=1 \
    --verify_state_save=0 --output=/dev/null
}

# wl_rows SYS DIR: every row into DIR.
wl_rows() {
  local sys=$1 d=$2
  wl_time "$sys" tar tar -C "$d" -xf "$WL_TAR"
  [ "$(find "$d/include" | wc -l)" -ge "$WL_TAR_FILES" ] || die "$sys: tar -x left files out"
  case "$sys" in
    wavefs|wavefs-wb)
      # The FUSE requests tar cost (user.wavefs.stats counts them by opcode;
      # the mount is fresh, so they are tar's and find's).
      record R "$sys" tar "$(getfattr --only-values -n user.wavefs.stats "$d" 2>/dev/null |
        awk -F= '/^requests_/ { n += $2 } END { print n + 0 }')"
      ;;
  esac
  wl_time "$sys" rsync rsync -a /usr/share/doc/ "$d/doc/"
  wl_time "$sys" ls wl_ls "$d"
  wl_time "$sys" rsync-again wl_rsync_again "$d"
  # A clone takes a few tenths of a second, where one run's noise on a
  # shared VM is as large as the differences between systems: the row is
  # the median of WL_CLONES clones (each its own sample, caches dropped).
  local i
  for i in $(seq 1 "$WL_CLONES"); do
    wl_time "$sys" clone git clone -q --no-hardlinks "$ROOT" "$d/repo$i"
    git -C "$d/repo$i" fsck --no-progress >>"$LOGS/workloads-$sys.log" 2>&1 || die "$sys: the cloned repository fails git fsck"
  done
  wl_time "$sys" append wl_append "$d"
  [ "$(wc -l <"$d/log")" -eq 2000 ] || die "$sys: the log lost lines"
  wl_time "$sys" tee wl_tee "$d"
  if command -v fio >/dev/null 2>&1; then
    wl_time "$sys" fio wl_fio "$d"
  fi
  wl_time "$sys" sqlite-wal python3 "$ROOT/scripts/bench/sqlite_txns.py" "$d" wal "$WL_SQLITE_TXNS"
  wl_time "$sys" sqlite-delete python3 "$ROOT/scripts/bench/sqlite_txns.py" "$d" delete "$WL_SQLITE_TXNS"
  # The daemon's peak memory (FUSE systems): over every row up to the
  # writers, and the writers' own (VmHWM reset before them through
  # clear_refs; what is still resident from earlier rows counts).
  local pid="" before=""
  case "$sys" in
    wavefs|wavefs-wb) pid=$WFS_PID ;;
    gocryptfs) pid=$GC_PID ;;
    passthrough) pid=$PT_PID ;;
  esac
  if [ -n "$pid" ]; then
    before=$(hwm_kib "$pid")
    echo 5 >"/proc/$pid/clear_refs" || die "$sys: cannot reset the daemon's VmHWM"
  fi
  wl_time "$sys" writers wl_writers "$d"
  wl_writers_check "$d" || die "$sys: a writer's file differs from its source"
  if [ -n "$pid" ]; then
    local during
    during=$(hwm_kib "$pid")
    record M "$sys" hwm_writers "$during"
    record M "$sys" hwm "$(( during > before ? during : before ))"
  fi
  wl_time "$sys" rm rm -rf "$d/include"
  [ ! -e "$d/include" ] || die "$sys: rm -rf left $d/include"
}

wl_run() {
  local sys=$1 d
  case "$sys" in
    ext4)
      d=$WORK/wl-ext4
      rm -rf "$d"; mkdir -p "$d"
      wl_rows ext4 "$d"
      rm -rf "$d"
      wl_settle
      ;;
    wavefs|wavefs-wb)
      local store=$WORK/wl-store mnt=$MNTS/wl-wavefs args=()
      [ "$sys" = wavefs-wb ] && args=(--writeback-cache)
      mkdir -p "$mnt"
      wfs_fresh_store "$store"
      wfs_mount "$store" "$mnt" "${args[@]}"
      wl_rows "$sys" "$mnt"
      unmount_timed "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
      rm -rf "$store" "$WAVEFS_HOME"
      unset WAVEFS_HOME
      wl_settle
      ;;
    passthrough)
      local under=$WORK/wl-pt mnt=$MNTS/wl-pt
      rm -rf "$under"; mkdir -p "$under" "$mnt"
      pt_mount "$under" "$mnt"
      wl_rows passthrough "$mnt"
      unmount_timed "$mnt" "$PT_PID"
      rm -rf "$under"
      wl_settle
      ;;
    gocryptfs)
      local cipher=$WORK/wl-gc mnt=$MNTS/wl-gocryptfs
      rm -rf "$cipher"; mkdir -p "$cipher" "$mnt"
      gc_init "$cipher"
      gc_mount "$cipher" "$mnt"
      wl_rows gocryptfs "$mnt"
      unmount_timed "$mnt" "$GC_PID"
      rm -rf "$cipher"
      wl_settle
      ;;
  esac
}

wl_main() {
  local sys run row
  if [ -n "$ONLY_SYSTEMS" ]; then
    IFS=, read -r -a WL_SYSTEMS <<<"$ONLY_SYSTEMS"
  fi
  for sys in "${WL_SYSTEMS[@]}"; do
    case "$sys" in
      ext4|wavefs|wavefs-wb) ;;
      passthrough) [ -x "$PT" ] || die "$PT not built (libfuse3-dev's examples)" ;;
      gocryptfs) command -v gocryptfs >/dev/null 2>&1 || MISSING[gocryptfs]=1 ;;
      *) die "unknown system '$sys' for --workloads (ext4,passthrough,wavefs,wavefs-wb,gocryptfs)" ;;
    esac
  done
  [ -x "$WAVEFS" ] || die "$WAVEFS not found (run scripts/build.sh)"
  wl_setup_inputs
  wl_detect_settle
  for run in $(seq 1 "$RUNS"); do
    for sys in "${WL_SYSTEMS[@]}"; do
      [ -n "${MISSING[$sys]:-}" ] && continue
      log "workloads run $run/$RUNS: $sys"
      wl_run "$sys"
    done
  done

  local table commit dirty cpu
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo "+dirty" || true)
  table=$(
    echo "## wavefs benchmark: everyday workloads"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); wavefs commit $commit$dirty; command: \`$CMDLINE\`"
    echo "- machine: $(nproc) cores ($cpu), kernel $(uname -r); runs: $RUNS (medians shown)$([ "$QUICK" -eq 1 ] && echo '; --quick inputs')"
    echo "- inputs: tar = /usr/include ($WL_TAR_FILES entries), rm = rm -rf of it; rsync = /usr/share/doc ($WL_DOC_FILES entries), ls = ls -lR of the copy, rsync-again = rsync -a again (nothing to copy); clone = this repository (median of $WL_CLONES clones per run);"
    echo "  append = 2000 x \`echo >> log\`; tee = $((WL_TEE_BYTES >> 20)) MiB in 8 KiB writes; fio = randwrite 4k-1m, $WL_FIO_SIZE, crc32c verify;"
    echo "  sqlite-wal, sqlite-delete = $WL_SQLITE_TXNS transactions of one 3 KB row, synchronous=FULL;"
    echo "  writers = $WL_WRITERS x \`dd bs=1M\` of $WL_WRITER_MIB MiB each at once (different data)"
    echo "- seconds each command took (page cache dropped before each); ratios against gocryptfs, ext4 and passthrough_ll -o xattr of the same run"
    local r line=""
    for sys in "${WL_SYSTEMS[@]}"; do
      r=$(med M "$sys" hwm)
      [ -n "$r" ] && line+="${line:+, }$sys $(kib_mib "$r")"
    done
    [ -n "$line" ] && echo "- daemon peak RSS over every row up to writers (VmHWM, MiB, median): $line"
    line=""
    for sys in "${WL_SYSTEMS[@]}"; do
      r=$(med M "$sys" hwm_writers)
      [ -n "$r" ] && line+="${line:+, }$sys $(kib_mib "$r")"
    done
    [ -n "$line" ] && echo "- daemon peak RSS during writers, after the rows before them (VmHWM reset before the row, MiB, median): $line"
    for sys in wavefs wavefs-wb; do
      r=$(med R "$sys" tar)
      [ -n "$r" ] && echo "- FUSE requests $sys received during tar (median): $(fmt "$r" 0), $(awk -v r="$r" -v f="$WL_TAR_FILES" 'BEGIN { printf "%.1f", r / f }') per entry"
    done
    echo
    echo "| workload | $(printf '%s | ' "${WL_SYSTEMS[@]}")wavefs vs gocryptfs | wavefs vs ext4 | wavefs vs passthrough | wavefs-wb vs gocryptfs | wavefs-wb vs ext4 |"
    echo "|---|$(printf -- '---|%.0s' "${WL_SYSTEMS[@]}")---|---|---|---|---|"
    for row in "${WL_ROWS[@]}"; do
      local line="| $row |" v
      for sys in "${WL_SYSTEMS[@]}"; do
        v=$(med W "$sys" "$row")
        line+=" $(fmt "$v") |"
      done
      line+=" $(ratio "$(med W wavefs "$row")" "$(med W gocryptfs "$row")") |"
      line+=" $(ratio "$(med W wavefs "$row")" "$(med W ext4 "$row")") |"
      line+=" $(ratio "$(med W wavefs "$row")" "$(med W passthrough "$row")") |"
      line+=" $(ratio "$(med W wavefs-wb "$row")" "$(med W gocryptfs "$row")") |"
      line+=" $(ratio "$(med W wavefs-wb "$row")" "$(med W ext4 "$row")") |"
      echo "$line"
    done
  )
  write_table "$table"
}
