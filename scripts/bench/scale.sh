# shellcheck shell=bash
# The --scale mode of scripts/bench.sh, sourced by it (it uses bench.sh's
# helpers: log, die, now, secs, record, med, wfs_mount, make_data, ...).
# What happens at sizes and counts far past the everyday (issue 11):
#
#   huge   one file of --huge-size (default 100G; 8G with --quick) written
#          through the mount with `dd bs=1M` from a pipe, then read back
#          cold and checked. The disk here cannot hold 100 GiB twice, so
#          the input is a block of incompressible data (4 GiB; 1 GiB with
#          --quick) repeated: every 4 MiB chunk is still read, sealed,
#          looked up and recorded, and every one is fetched and opened on
#          the way back, but identical chunks are stored once, so the store
#          receives one block's worth. The baseline is the same pipe into
#          /dev/null (the writer's limit) and into `openssl dgst` (the
#          reader's checksum's limit). Reported: time and rate, the
#          daemon's RSS sampled along the copy (at 10 %, 50 % and 100 % of
#          the bytes: flat or not), peak RSS, CPU per GiB, the index's size
#          per chunk after the copy.
#   files  --files N empty files (default 1,000,000; 100,000 with --quick)
#          in directories of 1,000, created through the mount, then after a
#          remount and a dropped page cache `ls -lR` and `rsync -a -n` of
#          the tree, each on ext4 and on wavefs. Reported: seconds and
#          microseconds per file, and the daemon's peak RSS.
# --huge-size 0 or --files 0 leaves that row out.

SC_HUGE=""
SC_FILES=""

sc_setup() {
  if [ "$QUICK" -eq 1 ]; then
    : "${SC_HUGE:=8G}" "${SC_FILES:=100000}"
    SC_BLOCK=1G
  else
    : "${SC_HUGE:=100G}" "${SC_FILES:=1000000}"
    SC_BLOCK=4G
  fi
  SC_HUGE_BYTES=$(to_bytes "$SC_HUGE")
  SC_BLOCK_BYTES=$(to_bytes "$SC_BLOCK")
  [ $((SC_HUGE_BYTES % SC_BLOCK_BYTES)) -eq 0 ] ||
    die "--huge-size must be a multiple of the $SC_BLOCK block"
  SC_REPEAT=$((SC_HUGE_BYTES / SC_BLOCK_BYTES))
  [[ "$SC_FILES" =~ ^[0-9]+$ ]] || die "--files must be a number"
  [ "$SC_HUGE_BYTES" -eq 0 ] || make_data "$SC_BLOCK"
}

# The huge file's bytes, on stdout.
sc_gen() {
  local i
  for ((i = 0; i < SC_REPEAT; i++)); do cat "$DATA/src-$SC_BLOCK"; done
}

sc_baselines() {
  local t0 t1 sum f=$DATA/huge-$SC_HUGE-of-$SC_BLOCK.sha256
  t0=$(now)
  sc_gen | dd of=/dev/null bs=1M iflag=fullblock status=none
  t1=$(now)
  record H pipe write "$(secs "$t0" "$t1")"
  t0=$(now)
  sum=$(sc_gen | openssl dgst -sha256 -r | cut -d' ' -f1)
  t1=$(now)
  record H pipe read "$(secs "$t0" "$t1")"
  echo "$sum" >"$f"
  SC_HUGE_SUM=$sum
}

# sc_rss_along FILE PID OUT: every second, the file's size as the mount
# reports it and the daemon's VmRSS (KiB), into OUT, until PID exits.
sc_rss_along() {
  local file=$1 pid=$2 out=$3 size rss
  : >"$out"
  while pid_alive "$pid"; do
    size=$(stat -c %s "$file" 2>/dev/null || echo 0)
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    echo "$size $rss" >>"$out"
    sleep 1
  done
}

# sc_rss_at OUT FRACTION: the largest VmRSS (MiB) sampled while the file
# had at most FRACTION of its bytes.
sc_rss_at() {
  awk -v total="$SC_HUGE_BYTES" -v f="$2" '
    $1 <= total * f && $2 > m { m = $2 }
    END { printf "%.1f", m / 1024 }' "$1"
}

sc_huge() {
  local store=$WORK/scale-store mnt=$MNTS/scale file t0 t1 c0 c1 along dd_pid
  local gib
  mkdir -p "$mnt"
  wfs_fresh_store "$store"
  wfs_mount "$store" "$mnt"
  file=$mnt/huge
  along=$WORK/rss-along
  # The block comes from the page cache, so the pipe is not the disk.
  cat "$DATA/src-$SC_BLOCK" >/dev/null
  log "huge: writing $SC_HUGE ($SC_REPEAT x the $SC_BLOCK block)"
  t0=$(now)
  sc_gen | dd of="$file" bs=1M iflag=fullblock status=none &
  dd_pid=$!
  sc_rss_along "$file" "$WFS_PID" "$along" &
  local sampler=$!
  wait "$dd_pid" || die "huge: dd into the mount failed"
  t1=$(now)
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  echo "$SC_HUGE_BYTES $(awk '/^VmRSS:/ {print $2}' "/proc/$WFS_PID/status")" >>"$along"
  record H wavefs write "$(secs "$t0" "$t1")"
  record H wavefs rss10 "$(sc_rss_at "$along" 0.10)"
  record H wavefs rss50 "$(sc_rss_at "$along" 0.50)"
  record H wavefs rss100 "$(sc_rss_at "$along" 1.00)"
  [ "$(stat -c %s "$file")" = "$SC_HUGE_BYTES" ] || die "huge: the file has the wrong size"
  unmount_timed "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
  record H wavefs flush "$UT_SECS"
  record H wavefs peak "$(kib_mib "$UT_PEAK_KIB")"
  record H wavefs cpuw "$(per_gib "$UT_CPU_TICKS" "$SC_HUGE_BYTES")"
  record H wavefs index "$(du -sk "$WAVEFS_HOME" | cut -f1)"
  record H wavefs stored "$(du -sk "$store" | cut -f1)"

  wfs_mount "$store" "$mnt"
  drop_caches
  log "huge: reading $SC_HUGE back"
  c0=$(cpu_ticks "$WFS_PID")
  t0=$(now)
  local sum
  sum=$(openssl dgst -sha256 -r <"$file" | cut -d' ' -f1)
  t1=$(now)
  c1=$(cpu_ticks "$WFS_PID")
  [ "$sum" = "$SC_HUGE_SUM" ] || die "huge: the file read back differs from what was written"
  record H wavefs read "$(secs "$t0" "$t1")"
  record H wavefs cpur "$(per_gib $((c1 - c0)) "$SC_HUGE_BYTES")"
  record H wavefs rpeak "$(kib_mib "$(hwm_kib "$WFS_PID")")"
  unmount_timed "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
  rm -rf "$store" "$WAVEFS_HOME"
  unset WAVEFS_HOME
  gib=$(awk -v b="$SC_HUGE_BYTES" 'BEGIN { print b / 1073741824 }')
  SC_GIB=$gib
}

# sc_make_tree DIR N: N empty files, 1,000 to a directory.
sc_make_tree() {
  python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 1000
for d in range((n + per - 1) // per):
    dd = os.path.join(root, f"d{d:04d}")
    os.mkdir(dd)
    for i in range(min(per, n - d * per)):
        os.close(os.open(os.path.join(dd, f"file-{i:04d}"),
                         os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644))
PY
}

# sc_list SYS DIR: the timed listings of the tree in DIR (page cache and
# the kernel's dentries dropped first).
sc_list() {
  local sys=$1 dir=$2 t0 t1 n empty=$WORK/rsync-empty
  drop_caches
  t0=$(now)
  n=$(ls -lR "$dir" | grep -c '^-rw')
  t1=$(now)
  [ "$n" -eq "$SC_FILES" ] || die "$sys: ls -lR listed $n files, not $SC_FILES"
  record F "$sys" ls "$(secs "$t0" "$t1")"
  rm -rf "$empty"; mkdir -p "$empty"
  drop_caches
  t0=$(now)
  n=$(rsync -a -n --out-format='%n' "$dir/" "$empty/" | grep -c 'file-')
  t1=$(now)
  [ "$n" -eq "$SC_FILES" ] || die "$sys: rsync -n listed $n files, not $SC_FILES"
  record F "$sys" rsync "$(secs "$t0" "$t1")"
  rm -rf "$empty"
}

sc_files_ext4() {
  local d=$WORK/scale-ext4 t0 t1
  rm -rf "$d"; mkdir -p "$d"
  t0=$(now)
  sc_make_tree "$d" "$SC_FILES"
  sync
  t1=$(now)
  record F ext4 create "$(secs "$t0" "$t1")"
  sc_list ext4 "$d"
  rm -rf "$d"
}

sc_files_wavefs() {
  local store=$WORK/scale-store mnt=$MNTS/scale t0 t1
  mkdir -p "$mnt"
  wfs_fresh_store "$store"
  wfs_mount "$store" "$mnt"
  log "files: creating $SC_FILES files through the mount"
  t0=$(now)
  sc_make_tree "$mnt" "$SC_FILES"
  t1=$(now)
  unmount_timed "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
  record F wavefs create "$(secs "$t0" "$t1")"
  record F wavefs cpeak "$(kib_mib "$UT_PEAK_KIB")"
  record F wavefs index "$(du -sk "$WAVEFS_HOME" | cut -f1)"
  wfs_mount "$store" "$mnt"
  log "files: listing them"
  sc_list wavefs "$mnt"
  record F wavefs lpeak "$(kib_mib "$(hwm_kib "$WFS_PID")")"
  unmount_timed "$mnt" "$WFS_PID" "$WAVEFS" unmount "$mnt"
  rm -rf "$store" "$WAVEFS_HOME"
  unset WAVEFS_HOME
}

# µs per file of a recorded F figure.
sc_us() {
  local v
  v=$(med F "$1" "$2")
  [ -n "$v" ] && awk -v s="$v" -v n="$SC_FILES" 'BEGIN { printf "%.0f", s * 1e6 / n }' || printf '–'
}

# sc_table: the table of every row measured so far.
sc_table() {
  local commit dirty cpu chunks w r ww wr sys
  cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo "+dirty" || true)
  chunks=$((SC_HUGE_BYTES / (4 << 20)))
  echo "## wavefs benchmark: scale"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); wavefs commit $commit$dirty; command: \`$CMDLINE\`"
  echo "- machine: $(nproc) cores ($cpu), kernel $(uname -r); runs: $RUNS (medians shown)"
  if [ -n "$(med H wavefs read)" ]; then
    echo "- huge: one $SC_HUGE file ($chunks chunks) written by \`dd bs=1M\` from a pipe of the same"
    echo "  $SC_BLOCK block of incompressible data repeated $SC_REPEAT times (identical chunks are stored once:"
    echo "  the store holds one block), read back cold with \`openssl dgst -sha256\` and checked;"
    echo "  pipe = the same pipe into /dev/null (write) and into \`openssl dgst\` (read)"
    echo
    echo "| file | system | write s | GiB/s | vs pipe | flush s | RSS MiB at 10 % / 50 % / 100 % | peak RSS MiB | CPU s/GiB written | index KiB | store GiB | read s | GiB/s | vs pipe | read peak RSS MiB | CPU s/GiB read |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    w=$(med H pipe write); r=$(med H pipe read)
    echo "| $SC_HUGE | pipe | $(fmt "$w") | $(awk -v g="$SC_GIB" -v s="$w" 'BEGIN { printf "%.2f", g / s }') | 1.00× | – | – | – | – | – | – | $(fmt "$r") | $(awk -v g="$SC_GIB" -v s="$r" 'BEGIN { printf "%.2f", g / s }') | 1.00× | – | – |"
    ww=$(med H wavefs write); wr=$(med H wavefs read)
    echo "| $SC_HUGE | wavefs | $(fmt "$ww") | $(awk -v g="$SC_GIB" -v s="$ww" 'BEGIN { printf "%.2f", g / s }') | $(ratio "$ww" "$w") | $(fmt "$(med H wavefs flush)") | $(fmt "$(med H wavefs rss10)" 1) / $(fmt "$(med H wavefs rss50)" 1) / $(fmt "$(med H wavefs rss100)" 1) | $(fmt "$(med H wavefs peak)" 1) | $(fmt "$(med H wavefs cpuw)") | $(fmt "$(med H wavefs index)" 0) | $(awk -v k="$(med H wavefs stored)" 'BEGIN { printf "%.1f", k / 1048576 }') | $(fmt "$wr") | $(awk -v g="$SC_GIB" -v s="$wr" 'BEGIN { printf "%.2f", g / s }') | $(ratio "$wr" "$r") | $(fmt "$(med H wavefs rpeak)" 1) | $(fmt "$(med H wavefs cpur)") |"
    echo
  fi
  if [ -n "$(med F wavefs ls)" ]; then
    echo "- files: $SC_FILES empty files in directories of 1,000, created by a Python loop (open O_CREAT|O_EXCL, close;"
    echo "  ext4 includes a \`sync\`), then after a remount (wavefs) and a dropped page cache \`ls -lR\` and"
    echo "  \`rsync -a -n\` into an empty directory, each checked to list every file"
    echo
    echo "| files | system | create s | µs/file | ls -lR s | µs/file | vs ext4 | rsync -n s | µs/file | vs ext4 | daemon peak RSS MiB (create / list) | index KiB |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    for sys in ext4 wavefs; do
      echo "| $SC_FILES | $sys | $(fmt "$(med F "$sys" create)") | $(sc_us "$sys" create) | $(fmt "$(med F "$sys" ls)") | $(sc_us "$sys" ls) | $(ratio "$(med F "$sys" ls)" "$(med F ext4 ls)") | $(fmt "$(med F "$sys" rsync)") | $(sc_us "$sys" rsync) | $(ratio "$(med F "$sys" rsync)" "$(med F ext4 rsync)") | $([ "$sys" = wavefs ] && echo "$(fmt "$(med F wavefs cpeak)" 1) / $(fmt "$(med F wavefs lpeak)" 1)" || echo –) | $([ "$sys" = wavefs ] && fmt "$(med F wavefs index)" 0 || echo –) |"
    done
  fi
}

sc_main() {
  local run
  [ -x "$WAVEFS" ] || die "$WAVEFS not found (run scripts/build.sh)"
  sc_setup
  local avail need
  avail=$(df --output=avail -B1 "$BENCH" | tail -n 1)
  need=$((3 * SC_BLOCK_BYTES + (2 << 30)))
  [ "$avail" -ge "$need" ] || die "not enough free space in $BENCH: $avail bytes free, need $need"
  if [ "$SC_HUGE_BYTES" -gt 0 ]; then
    log "scale: baselines (the $SC_HUGE pipe into /dev/null and into openssl dgst)"
    sc_baselines
  fi
  # The table is written after every row, so a run cut short keeps what
  # it measured.
  for run in $(seq 1 "$RUNS"); do
    if [ "$SC_HUGE_BYTES" -gt 0 ]; then
      log "scale run $run/$RUNS: huge file"
      sc_huge
      write_table "$(sc_table)"
    fi
    if [ "$SC_FILES" -gt 0 ]; then
      log "scale run $run/$RUNS: $SC_FILES files on ext4"
      sc_files_ext4
      log "scale run $run/$RUNS: $SC_FILES files on wavefs"
      sc_files_wavefs
      write_table "$(sc_table)"
    fi
  done
}
