// wavefs command line: init, mount, unmount, status.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "fs/commands.h"
#include "fs/gc_command.h"
#include "fs/mount_helper.h"
#include "fs/restore_command.h"
#include "fs/share_command.h"
#include "store/store_config.h"

int main(int argc, char** argv) {
  using wavefs::MountOptions;
  CLI::App app{
      "wavefs: copy files in, get encrypted, chunked, deduplicated uploads"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "wavefs 0.1.0");

  std::string store, key_file, mountpoint,
      memory_limit = "64M", spill_reserve = "64M", page_out = "1G";
  bool watch = false;
  MountOptions mo;

  auto* init =
      app.add_subcommand("init", "Create a store and its convergence secret");
  init->add_option("STORE", store,
                   "Store directory, file:// URL or s3://BUCKET/PREFIX")
      ->required();
  init->add_option(
      "--key-file", key_file,
      "Where to write the key (default $WAVEFS_HOME/<store id>/key)");
  int init_format = 0;  // the store kind's default (RunInit)
  init->add_option("--format", init_format,
                   "Chunk format of the new store: 4 (AES-256-GCM, "
                   "addressed by its tags; the default for a local store), "
                   "3 (AES-256-GCM, addressed by the SHA-256 of every "
                   "byte; the default for S3) or 2 (XChaCha20-Poly1305 and "
                   "BLAKE2b, for CPUs without AES instructions); "
                   "docs/format.md")
      ->check(
          CLI::Range(wavefs::kOldestStoreFormat, wavefs::kNewestStoreFormat));

  auto* mount = app.add_subcommand(
      "mount", "Mount a store (returns once the mount is ready)");
  mount
      ->add_option("STORE", mo.store,
                   "Store directory, file:// URL or s3://BUCKET/PREFIX")
      ->required();
  mount
      ->add_option("MOUNTPOINT", mo.mountpoint,
                   "Existing empty directory, not a mount point already")
      ->required();
  mount->add_flag("-f,--foreground", mo.foreground,
                  "Stay in the foreground, log to stderr too");
  mount->add_option("--spill-dir", mo.spill_dir,
                    "Staging directory (default $WAVEFS_HOME/<id>/spill)");
  mount->add_option("--meta-dir", mo.meta_dir,
                    "Index directory (default $WAVEFS_HOME/<id>/meta)");
  mount->add_option("--key-file", mo.key_file,
                    "Key file (default $WAVEFS_HOME/<id>/key)");
  mount->add_option("--log-file", mo.log_file,
                    "Log file (default $WAVEFS_HOME/<id>/wavefs.log)");
  mount
      ->add_option("--log-level", mo.log_level,
                   "trace, debug, info, warn, error")
      ->capture_default_str();
  mount->add_option("-o", mo.fuse_options,
                    "FUSE mount options (allow_other, ro, ...); repeatable");
  mount
      ->add_option("--memory-limit", memory_limit,
                   "Daemon memory budget, divided among buffers and caches")
      ->capture_default_str();
  mount
      ->add_option("--spill-reserve", spill_reserve,
                   "Free space kept on the spill filesystem")
      ->capture_default_str();
  mount->add_option("--upload-threads", mo.upload_threads,
                    "Parallel chunk uploads (default 2, 4 for S3)");
  mount
      ->add_option("--small-upload-threads", mo.small_upload_threads,
                   "More parallel uploads for chunks of at most 256 KiB "
                   "(default 0, 12 for S3)")
      ->check(CLI::Range(0, 64));
  mount
      ->add_option("--prefetch-files", mo.prefetch_files,
                   "Small files (up to 1 MiB) fetched ahead of a program "
                   "reading a directory's files in order, as cp -r, tar and "
                   "rsync do (default 0, 8 for S3)")
      ->check(CLI::Range(0, 64));
  mount->add_option("--s3-endpoint", mo.s3_endpoint,
                    "S3 endpoint URL (overrides the store URL's endpoint=)");
  mount->add_option("--s3-region", mo.s3_region,
                    "S3 region (overrides region=, $AWS_REGION)");
  mount->add_option("--s3-path-style", mo.s3_path_style,
                    "1: path-style URLs, 0: virtual-host style");
  mount
      ->add_option("--seal-threads", mo.seal_threads,
                   "Threads hashing, encrypting and staging chunks "
                   "(default: cores + 1, at most 8)")
      ->capture_default_str();
  mount
      ->add_option("--fuse-threads", mo.fuse_threads,
                   "FUSE worker threads kept for the mount")
      ->capture_default_str();
  mount
      ->add_option("--fuse-max-threads", mo.fuse_max_threads,
                   "Most FUSE worker threads at once (more start while all "
                   "are held up, e.g. by more files written at once)")
      ->capture_default_str();
  mount
      ->add_option("--fuse-spin", mo.fuse_spin_us,
                   "Microseconds the FUSE receiver polls for the next "
                   "request before it sleeps (0: no polling)")
      ->capture_default_str();
  mount
      ->add_option("--space-wait", mo.space_wait_s,
                   "Seconds a writer waits for uploads to free spill space "
                   "before ENOSPC")
      ->capture_default_str();
  mount
      ->add_option("--drain-timeout", mo.drain_timeout_s,
                   "Seconds without upload progress before unmount gives up "
                   "(chunks stay queued)")
      ->capture_default_str();

  mount
      ->add_option("--snapshot-interval", mo.snapshot_interval_s,
                   "Seconds between index snapshots in the store while "
                   "anything changes (0: no snapshots)")
      ->capture_default_str();
  mount
      ->add_option("--snapshot-changes", mo.snapshot_changes,
                   "Changes that make a burst, snapshotted once the index "
                   "has been quiet for --snapshot-quiet seconds")
      ->capture_default_str();
  mount
      ->add_option("--snapshot-quiet", mo.snapshot_quiet_s,
                   "Quiet seconds after a burst before its snapshot")
      ->capture_default_str();
  mount
      ->add_option("--snapshot-keep", mo.snapshot_keep,
                   "Index snapshots kept in the store")
      ->capture_default_str();
  mount
      ->add_option("--gc-interval", mo.gc_interval_s,
                   "Seconds between automatic gc runs in the daemon, as "
                   "'wavefs gc MOUNTPOINT' does them (0: none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  mount
      ->add_option("--tail-hold", mo.tail_hold_s,
                   "Seconds a chunk likely to be replaced soon waits before "
                   "its upload (the last chunk of a file that keeps being "
                   "rewritten, a chunk evicted before its file's close); "
                   "replaced meanwhile, it is never uploaded (0: upload "
                   "every version)")
      ->capture_default_str();
  mount
      ->add_option("--idle-release", mo.idle_release_s,
                   "Seconds after which chunk buffers nobody used go back "
                   "to the system (0: kept for the mount's life)")
      ->capture_default_str();
  mount
      ->add_option("--page-out", page_out,
                   "Spill space where buffers of files written all over "
                   "wait, encrypted under a key of this process, until "
                   "their next write, instead of being sealed as chunks at "
                   "each eviction (0: seal them)")
      ->capture_default_str();
  mount
      ->add_option("--attr-timeout", mo.attr_timeout_s,
                   "Seconds the kernel keeps names and attributes (and "
                   "that a name is missing) before it asks the daemon again; "
                   "every change goes through this mount, so they stay "
                   "right (0: ask every time)")
      ->capture_default_str();
  mount->add_flag("--writeback-cache", mo.writeback_cache,
                  "Let the kernel gather small writes in its page cache and "
                  "send them in ~1 MiB pieces (errors of a full spill come "
                  "back from close or fsync instead of write)");
  mount->add_flag("--no-tail-journal", mo.no_tail_journal,
                  "Seal a file's last chunk at every close, even when the "
                  "file is closed again and again (a log): no journal "
                  "records in the index");
  mount->add_flag("--no-splice", mo.no_splice,
                  "Read write requests into memory instead of pipes (one "
                  "more copy of every byte written)");

  auto* unmount = app.add_subcommand(
      "unmount", "Unmount and wait until every pending wave is in the store");
  unmount->alias("umount");
  unmount->add_option("MOUNTPOINT", mountpoint, "Mount point")->required();

  auto* status =
      app.add_subcommand("status", "Pending uploads, rate and ETA of a mount");
  status->add_option("MOUNTPOINT", mountpoint, "Mount point")->required();
  status->add_flag("--watch", watch,
                   "Refresh every second with a progress bar");

  wavefs::ShareArgs share_args;
  auto* share = app.add_subcommand(
      "share",
      "Write a file's data map as a .wfmap file (stdout) and pin its chunks");
  share->add_option("FILE", share_args.file, "A file inside a wavefs mount")
      ->required();
  share->add_option("-o,--output", share_args.output,
                    "Write the map here (mode 0600) instead of stdout");
  share->add_flag("--no-wait", share_args.no_wait,
                  "Do not wait until every chunk is in the store");
  std::string unshare_target, unshare_mount;
  auto* unshare = app.add_subcommand(
      "unshare", "Release the pins of a share (by its .wfmap or share id)");
  unshare->add_option("TARGET", unshare_target, "A .wfmap file or a share id")
      ->required();
  unshare->add_option("--mount", unshare_mount,
                      "The mount that made the share (default: ask every "
                      "wavefs mount)");
  wavefs::GetArgs get_args;
  auto* get = app.add_subcommand(
      "get", "Fetch, verify and decrypt a shared file from a store");
  get->add_option("WFMAP", get_args.wfmap, "The .wfmap file")->required();
  get->add_option("STORE", get_args.store,
                  "Store directory, file:// URL or s3://BUCKET/PREFIX")
      ->required();
  get->add_option("DEST", get_args.dest, "Where to write the file")->required();
  get->add_flag("--force", get_args.force, "Replace DEST if it exists");
  get->add_option("--s3-endpoint", get_args.s3_endpoint, "S3 endpoint URL");
  get->add_option("--s3-region", get_args.s3_region, "S3 region");
  get->add_option("--s3-path-style", get_args.s3_path_style,
                  "1: path-style URLs, 0: virtual-host style");
  wavefs::MaintOptions gco, fsko;
  gco.command = "gc";
  fsko.command = "fsck";
  auto* gc = app.add_subcommand(
      "gc", "Remove store chunks no file, queue entry or pin names");
  gc->add_option("TARGET", gco.target,
                 "Mount point (gc runs in its daemon, safe while in use), "
                 "or STORE when it is not mounted")
      ->required();
  gc->add_flag("--dry-run", gco.dry_run,
               "Only count what would be removed, and its bytes");
  gc->add_option(
      "--meta-dir", gco.meta_dir,
      "STORE only: index directory (default $WAVEFS_HOME/<id>/meta)");
  gc->add_option(
      "--spill-dir", gco.spill_dir,
      "STORE only: spill directory (default $WAVEFS_HOME/<id>/spill)");
  auto* fsck = app.add_subcommand(
      "fsck",
      "Check the index, the spill and the store; exit 0 clean, 1 corrected, "
      "4 errors left, 8 operational error, 16 usage");
  fsck->add_option("TARGET", fsko.target, "Mount point, or STORE")->required();
  fsck->add_flag("--verify", fsko.verify,
                 "Read every chunk and check it against its address");
  fsck->add_flag("--repair", fsko.repair,
                 "Put damaged chunks again from the spill; fix the index "
                 "(STORE only)");
  fsck->add_option("--meta-dir", fsko.meta_dir, "STORE only: index directory");
  fsck->add_option("--spill-dir", fsko.spill_dir,
                   "STORE only: spill directory");
  wavefs::RestoreArgs restore_args;
  auto* restore = app.add_subcommand(
      "restore",
      "Rebuild this machine's index from a snapshot in the store, or list "
      "the snapshots");
  restore
      ->add_option("STORE", restore_args.store,
                   "Store directory, file:// URL or s3://BUCKET/PREFIX")
      ->required();
  restore->add_option("--key-file", restore_args.key_file,
                      "The store's key file (default $WAVEFS_HOME/<id>/key; "
                      "copied there when absent)");
  restore->add_option("--snapshot", restore_args.snapshot,
                      "Snapshot id (default: the newest usable one)");
  restore->add_flag("--list", restore_args.list,
                    "List the snapshots with their times and sizes");
  restore->add_flag("--force", restore_args.force, "Replace an existing index");
  restore->add_option("--meta-dir", restore_args.meta_dir,
                      "Index directory (default $WAVEFS_HOME/<id>/meta)");
  restore->add_option("--s3-endpoint", restore_args.s3_endpoint,
                      "S3 endpoint URL");
  restore->add_option("--s3-region", restore_args.s3_region, "S3 region");
  restore->add_option("--s3-path-style", restore_args.s3_path_style,
                      "1: path-style URLs, 0: virtual-host style");
  // Started as mount(8)'s or umount(8)'s helper (fs/mount_helper.h).
  const auto helper = wavefs::HelperKindOf(argv[0]);
  if (helper == wavefs::HelperKind::kUmount)
    return wavefs::RunUmountHelper({argv, argv + argc});
  wavefs::MountHelperCall helper_call;
  std::vector<char*> helper_argv;
  if (helper == wavefs::HelperKind::kMount) {
    auto call = wavefs::TranslateMountHelperArgs(*mount, {argv, argv + argc});
    if (!call.ok())
      return std::fprintf(stderr, "mount.fuse.wavefs: %s\n",
                          call.status().message().c_str()),
             1;
    helper_call = std::move(*call);
    for (auto& a : helper_call.args) helper_argv.push_back(a.data());
    argc = static_cast<int>(helper_argv.size());
    argv = helper_argv.data();
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "wavefs: %s (see 'wavefs --help')\n", e.what());
    // fsck(8): 16 is a usage error.
    return argc > 1 && std::string(argv[1]) == "fsck" ? 16 : 2;
  }
  if (*init) return wavefs::RunInit(store, key_file, init_format);
  if (*mount) {
    auto limit = wavefs::ParseSize(memory_limit);
    if (!limit.ok())
      return std::fprintf(stderr, "wavefs: --memory-limit: %s\n",
                          limit.status().message().c_str()),
             2;
    auto reserve = wavefs::ParseSize(spill_reserve);
    if (!reserve.ok())
      return std::fprintf(stderr, "wavefs: --spill-reserve: %s\n",
                          reserve.status().message().c_str()),
             2;
    auto paging = wavefs::ParseSize(page_out);
    if (!paging.ok())
      return std::fprintf(stderr, "wavefs: --page-out: %s\n",
                          paging.status().message().c_str()),
             2;
    mo.memory_limit = *limit;
    mo.spill_reserve = *reserve;
    mo.page_out = *paging;
    if (helper == wavefs::HelperKind::kMount)
      return helper_call.fake
                 ? 0
                 : wavefs::FinishMountHelper(helper_call, wavefs::RunMount(mo));
    return wavefs::RunMount(mo);
  }
  if (*unmount) return wavefs::RunUnmount(mountpoint);
  if (*status) return wavefs::RunStatus(mountpoint, watch);
  if (*gc) return wavefs::RunGc(gco);
  if (*fsck) return wavefs::RunFsck(fsko);
  if (*share) return wavefs::RunShare(share_args);
  if (*unshare) return wavefs::RunUnshare(unshare_target, unshare_mount);
  if (*get) return wavefs::RunGet(get_args);
  if (*restore) return wavefs::RunRestore(restore_args);
  return 2;
}
