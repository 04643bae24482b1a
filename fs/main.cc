// wavefs command line: init, mount, unmount, status.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "fs/commands.h"
#include "fs/mount_helper.h"
#include "fs/gc_command.h"

int main(int argc, char** argv) {
  using wavefs::MountOptions;
  CLI::App app{
      "wavefs: copy files in, get encrypted, chunked, deduplicated uploads"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "wavefs 0.1.0");

  std::string store, key_file, mountpoint, memory_limit = "64M",
                                           spill_reserve = "64M";
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

  auto* mount = app.add_subcommand(
      "mount", "Mount a store (returns once the mount is ready)");
  mount
      ->add_option("STORE", mo.store,
                   "Store directory, file:// URL or s3://BUCKET/PREFIX")
      ->required();
  mount->add_option("MOUNTPOINT", mo.mountpoint, "Existing empty directory")
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
                   "Most FUSE worker threads")
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

  auto* unmount = app.add_subcommand(
      "unmount", "Unmount and wait until every pending wave is in the store");
  unmount->alias("umount");
  unmount->add_option("MOUNTPOINT", mountpoint, "Mount point")->required();

  auto* status =
      app.add_subcommand("status", "Pending uploads, rate and ETA of a mount");
  status->add_option("MOUNTPOINT", mountpoint, "Mount point")->required();
  status->add_flag("--watch", watch,
                   "Refresh every second with a progress bar");

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
  if (*init) return wavefs::RunInit(store, key_file);
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
    mo.memory_limit = *limit;
    mo.spill_reserve = *reserve;
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
  return 2;
}
