// `wavefs gc` and `wavefs fsck`: against a mount point (the daemon runs
// them, fs/maintenance.h) or a store that is not mounted (the index is
// opened here).
#include "fs/gc_command.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>

#include "chunker/crypto.h"
#include "fs/maintenance.h"
#include "fs/options.h"
#include "store/fsck.h"
#include "store/gc.h"
#include "store/snapshot.h"
#include "store/store_location.h"

namespace wavefs {
namespace {

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "wavefs: %s\n", message.c_str());
  return code;
}

// One progress line on a terminal (stderr), overwritten in place.
class ProgressLine {
 public:
  explicit ProgressLine(std::string what) : what_(std::move(what)) {
    tty_ = isatty(2);
  }
  void Show(const std::string& phase, uint64_t done, uint64_t total) {
    if (!tty_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(100) && done != total) return;
    last_ = now;
    if (total > 0) {
      const int width = 30;
      const int filled = static_cast<int>(width * done / total);
      std::fprintf(stderr, "\r%s: %-9s [%s%s] %lu/%lu\033[K", what_.c_str(),
                   phase.c_str(), std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(),
                   static_cast<unsigned long>(done),
                   static_cast<unsigned long>(total));
    } else {
      std::fprintf(stderr, "\r%s: %-9s %lu\033[K", what_.c_str(), phase.c_str(),
                   static_cast<unsigned long>(done));
    }
    shown_ = true;
  }
  void Clear() {
    if (shown_) std::fprintf(stderr, "\r\033[K");
    shown_ = false;
  }

 private:
  std::string what_;
  bool tty_ = false;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

std::map<std::string, std::string> KeyValues(const std::string& text) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos && !kv.count(line.substr(0, eq)))
      kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

bool IsMount(const std::string& path) {
  char b[16];
  return lgetxattr(path.c_str(), "user.wavefs.stats", b, 0) >= 0 ||
         errno == ERANGE;
}

Result<std::string> GetText(const std::string& path, const char* name) {
  std::string v(70000, '\0');
  ssize_t n = lgetxattr(path.c_str(), name, v.data(), v.size());
  if (n < 0)
    return Status::Error(Code::kIo, std::string("cannot read ") + name +
                                        " of " + path + ": " +
                                        std::strerror(errno));
  v.resize(static_cast<size_t>(n));
  return v;
}

// Starts a task in the daemon and waits for it; returns its final state.
Result<std::map<std::string, std::string>> RunInDaemon(const std::string& mnt,
                                                       const char* name,
                                                       const std::string& args,
                                                       ProgressLine* line) {
  if (lsetxattr(mnt.c_str(), name, args.data(), args.size(), 0) != 0) {
    if (errno == EBUSY)
      return Status::Error(Code::kBusy,
                           "a gc or fsck is already running on " + mnt);
    return Status::Error(Code::kIo, "cannot start it in the daemon of " + mnt +
                                        ": " + std::strerror(errno));
  }
  while (true) {
    auto text = GetText(mnt, name);
    if (!text.ok()) return text.status();
    auto kv = KeyValues(*text);
    if (kv["state"] != "running") {
      line->Clear();
      kv["_text"] = *text;
      return kv;
    }
    line->Show(kv["phase"], std::strtoull(kv["done"].c_str(), nullptr, 10),
               std::strtoull(kv["total"].c_str(), nullptr, 10));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// What an offline run needs: the store and the local index, locked.
struct Offline {
  StoreLocation where;
  StoreConfig config;
  std::unique_ptr<ChunkStore> store;
  std::unique_ptr<Index> index;
  std::unique_ptr<Spill> spill;
  std::string meta_dir;
  std::vector<int> lock_fds;
  ~Offline() {
    index.reset();
    for (int fd : lock_fds) close(fd);
  }
};

// Opens STORE's index like a mount would (the same lock), or says to give
// the mount point when a daemon holds it. *code: the exit code on failure.
Status OpenOffline(const MaintOptions& o, Offline* off) {
  WAVEFS_RETURN_IF_ERROR(InitCrypto());
  auto where = ResolveStore(o.target, "", "", "");
  if (!where.ok()) return where.status();
  off->where = *where;
  auto cfg = ReadStoreConfigAt(off->where);
  if (!cfg.ok()) {
    if (cfg.status().code() == Code::kNotFound)
      return Status::Error(
          Code::kNotFound,
          o.target + " is neither a wavefs mount point nor a store");
    return cfg.status();
  }
  off->config = *cfg;
  const std::string base = WavefsHome() + "/" + cfg->store_id;
  const std::string meta = o.meta_dir.empty() ? base + "/meta" : o.meta_dir;
  const std::string spill = o.spill_dir.empty() ? base + "/spill" : o.spill_dir;
  off->meta_dir = meta;
  if (access((meta + "/index").c_str(), F_OK) != 0)
    return Status::Error(Code::kNotFound, "no index for " +
                                              off->where.Describe() + " in " +
                                              meta + " (give --meta-dir)");
  // The daemon's locks: while we hold them no daemon can start, and if a
  // daemon holds them the store is mounted.
  for (const std::string& dir : {meta, spill}) {
    if (access(dir.c_str(), F_OK) != 0) continue;
    const std::string path = dir + "/LOCK";
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
      return Status::Error(Code::kIo,
                           "cannot open " + path + ": " + std::strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      char owner[512] = {0};
      (void)!pread(fd, owner, sizeof owner - 1, 0);
      close(fd);
      std::string who(owner);
      const auto nl = who.find('\n');
      std::string mnt = nl == std::string::npos ? "" : who.substr(nl + 1);
      while (!mnt.empty() && mnt.back() == '\n') mnt.pop_back();
      return Status::Error(Code::kBusy,
                           off->where.Describe() + " is mounted" +
                               (mnt.empty() ? "" : " at " + mnt) +
                               " (its daemon holds the index): give the mount "
                               "point instead, e.g. 'wavefs " +
                               o.command + " " +
                               (mnt.empty() ? "MOUNTPOINT" : mnt) + "'");
    }
    off->lock_fds.push_back(fd);
  }
  Index::Options io;
  auto index = Index::Open(meta + "/index", io);
  if (!index.ok()) return index.status().Annotate("open the index");
  off->index = std::move(*index);
  auto sp = Spill::Open(spill);
  if (!sp.ok()) return sp.status().Annotate("open the spill");
  off->spill = std::move(*sp);
  auto st = OpenChunkStore(off->where, off->config.chunk_format());
  if (!st.ok()) return st.status();
  off->store = std::move(*st);
  return Status::Ok();
}

}  // namespace

int RunGc(const MaintOptions& o) {
  ProgressLine line("gc");
  if (IsMount(o.target)) {
    auto kv =
        RunInDaemon(o.target, kXattrGc, o.dry_run ? "dry-run" : "run", &line);
    if (!kv.ok()) return Fail(1, kv.status().message());
    if ((*kv)["state"] != "done")
      return Fail(1, "gc failed: " + (*kv)["error"]);
    std::printf("wavefs: gc: %s\n", (*kv)["summary"].c_str());
    return (*kv)["exit"] == "0" ? 0 : 1;
  }
  Offline off;
  if (Status s = OpenOffline(o, &off); !s.ok()) return Fail(1, s.message());
  GcOptions go;
  go.dry_run = o.dry_run;
  go.progress = [&](const GcProgress& p) {
    line.Show(p.phase, p.done, p.total);
  };
  // Chunks the index snapshots name stay: reading them needs the key.
  auto snapshots = ListSnapshots(off.store.get());
  if (!snapshots.ok())
    return Fail(
        1, "cannot list the index snapshots: " + snapshots.status().message());
  if (!snapshots->empty()) {
    const std::string key_file =
        WavefsHome() + "/" + off.config.store_id + "/key";
    auto secret = ReadKeyFile(key_file);
    if (!secret.ok())
      return Fail(1, "gc must read the index snapshots to keep their chunks: " +
                         secret.status().message());
    go.snapshot_addresses =
        [store = off.store.get(), key = DeriveSnapshotKey(*secret),
         work = off.meta_dir](const std::function<void(const Address&)>& fn) {
          return ForEachSnapshotAddress(store, key, work, fn);
        };
  }
  auto r = CollectGarbage(off.index.get(), off.store.get(), go);
  line.Clear();
  if (!r.ok()) return Fail(1, "gc failed: " + r.status().message());
  std::printf("wavefs: gc: %s\n", r->Summary().c_str());
  return r->failed > 0 ? 1 : 0;
}

int RunFsck(const MaintOptions& o) {
  ProgressLine line("fsck");
  if (IsMount(o.target)) {
    std::string args = "check";
    if (o.verify) args += ",verify";
    if (o.repair) args += ",repair";
    auto kv = RunInDaemon(o.target, kXattrFsck, args, &line);
    if (!kv.ok()) return Fail(8, kv.status().message());
    if ((*kv)["state"] != "done")
      return Fail(8, "fsck failed: " + (*kv)["error"]);
    // The report: every line after the state lines.
    std::istringstream in((*kv)["_text"]);
    std::string l;
    while (std::getline(in, l)) {
      if (l.rfind("state=", 0) == 0 || l.rfind("phase=", 0) == 0 ||
          l.rfind("done=", 0) == 0 || l.rfind("total=", 0) == 0 ||
          l.rfind("exit=", 0) == 0)
        continue;
      std::printf("%s\n", l.c_str());
    }
    return std::atoi((*kv)["exit"].c_str());
  }
  Offline off;
  if (Status s = OpenOffline(o, &off); !s.ok()) return Fail(8, s.message());
  FsckOptions fo;
  fo.verify = o.verify;
  fo.repair = o.repair;
  fo.index_repair = true;
  fo.format = off.config.chunk_format();
  fo.progress = [&](const std::string& phase, uint64_t done, uint64_t total) {
    line.Show(phase, done, total);
  };
  auto r = CheckStore(off.index.get(), off.spill.get(), off.store.get(), fo);
  line.Clear();
  if (!r.ok()) return Fail(8, "fsck failed: " + r.status().message());
  std::fputs(r->Text().c_str(), stdout);
  return r->ExitCode();
}

}  // namespace wavefs
