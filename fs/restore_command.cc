// `wavefs restore STORE [--list] [--snapshot ID] [--key-file KEY]`.
#include "fs/restore_command.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>

#include "chunker/crypto.h"
#include "chunker/wfmap.h"
#include "fs/options.h"
#include "store/file_util.h"
#include "store/snapshot.h"
#include "store/store_config.h"
#include "store/store_location.h"

namespace wavefs {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "wavefs: %s\n", message.c_str());
  return 1;
}

std::string Size(uint64_t bytes) {
  char b[32];
  if (bytes < (1 << 20))
    std::snprintf(b, sizeof b, "%.1f KiB", bytes / 1024.0);
  else
    std::snprintf(b, sizeof b, "%.1f MiB", bytes / 1048576.0);
  return b;
}

// The key as a fresh machine's mount will look for it.
Status InstallKey(const std::string& from, const std::string& to) {
  if (access(to.c_str(), F_OK) == 0) return Status::Ok();
  std::vector<uint8_t> bytes;
  WAVEFS_RETURN_IF_ERROR(ReadWholeFile(from, &bytes));
  const size_t slash = to.find_last_of('/');
  WAVEFS_RETURN_IF_ERROR(MakeDirs(to.substr(0, slash), 0700));
  return WriteFileDurably(to, bytes, 0600);
}

}  // namespace

int RunRestore(const RestoreArgs& a) {
  if (Status s = InitCrypto(); !s.ok()) return Fail(s.message());
  auto where =
      ResolveStore(a.store, a.s3_endpoint, a.s3_region, a.s3_path_style);
  if (!where.ok()) return Fail(where.status().message());
  auto cfg = ReadStoreConfigAt(*where);
  if (!cfg.ok()) return Fail(cfg.status().message());
  auto store = OpenChunkStore(*where, cfg->chunk_format());
  if (!store.ok()) return Fail(store.status().message());
  const std::string desc = where->Describe();

  if (a.list) {
    auto all = ListSnapshots(store->get());
    if (!all.ok())
      return Fail("cannot list the snapshots of " + desc + ": " +
                  all.status().message());
    if (all->empty()) return Fail("no index snapshots in " + desc);
    std::printf("%-30s %-27s %s\n", "SNAPSHOT", "TAKEN", "SIZE");
    for (const auto& s : *all)
      std::printf("%-30s %-27s %s\n", s.id.c_str(),
                  SnapshotTimeOf(s.id).c_str(), Size(s.size).c_str());
    return 0;
  }

  const std::string base = WavefsHome() + "/" + cfg->store_id;
  const std::string key_file = a.key_file.empty() ? base + "/key" : a.key_file;
  auto secret = ReadKeyFile(key_file);
  if (!secret.ok()) return Fail(secret.status().message());
  auto store_id = IdFromHex(cfg->store_id);
  if (!store_id.ok())
    return Fail("store id '" + cfg->store_id + "' of " + desc +
                " is not 32 hex characters");
  const std::string meta = a.meta_dir.empty() ? base + "/meta" : a.meta_dir;
  const std::string index_dir = meta + "/index";
  if (Status s = MakeDirs(meta, 0700); !s.ok()) return Fail(s.message());

  // The daemon's lock: no mount may start on this index meanwhile.
  const std::string lock_path = meta + "/LOCK";
  int lock = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock < 0)
    return Fail("cannot open " + lock_path + ": " + std::strerror(errno));
  if (flock(lock, LOCK_EX | LOCK_NB) != 0) {
    close(lock);
    return Fail("metadata directory " + meta +
                " is in use by a wavefs daemon: unmount it first");
  }
  struct Unlock {
    int fd;
    ~Unlock() { close(fd); }
  } unlock{lock};

  std::error_code ec;
  if (std::filesystem::exists(index_dir, ec)) {
    if (!a.force)
      return Fail("an index already exists in " + meta +
                  "; restore never overwrites one (--force replaces it)");
    std::filesystem::remove_all(index_dir, ec);
    if (ec)
      return Fail("cannot remove the old index " + index_dir + ": " +
                  ec.message());
  }

  auto r = RestoreIndex(store->get(), DeriveSnapshotKey(*secret), *store_id,
                        index_dir, a.snapshot);
  if (r.ok()) {
    for (const auto& s : r->skipped)
      std::fprintf(stderr,
                   "wavefs: skipped snapshot %s; restored the next older "
                   "one\n",
                   s.c_str());
  }
  if (!r.ok()) {
    if (r.status().code() == Code::kPermission)
      return Fail(r.status().message() + " (" + key_file + ")");
    if (r.status().code() == Code::kNotFound && a.snapshot.empty())
      return Fail("no index snapshots in " + desc +
                  " (a mount uploads one at every unmount)");
    return Fail(r.status().message());
  }
  if (!a.key_file.empty()) {
    if (Status s = InstallKey(a.key_file, base + "/key"); !s.ok())
      std::fprintf(stderr, "wavefs: note: could not copy the key to %s: %s\n",
                   (base + "/key").c_str(), s.message().c_str());
  }
  std::printf(
      "wavefs: restored the index of %s from snapshot %s (%s): %lu records, "
      "%lu chunk refs, into %s\n",
      desc.c_str(), r->id.c_str(), SnapshotTimeOf(r->id).c_str(),
      static_cast<unsigned long>(r->records),
      static_cast<unsigned long>(r->chunk_refs), meta.c_str());
  if (r->missing > 0)
    std::fprintf(stderr,
                 "wavefs: warning: %lu of the %lu chunks still uploading when "
                 "the snapshot was taken are not in the store; %lu files have "
                 "unreadable ranges ('wavefs fsck' names them)\n",
                 static_cast<unsigned long>(r->missing),
                 static_cast<unsigned long>(r->pending),
                 static_cast<unsigned long>(r->damaged_files));
  return 0;
}

}  // namespace wavefs
