#include "tests/testing/power_cut_env.h"

#include <fcntl.h>
#include <rocksdb/file_system.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace wavefs {
namespace testing_util {
namespace {

namespace fs = std::filesystem;

std::string Clean(const std::string& path) {
  std::string p = fs::path(path).lexically_normal().string();
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string ParentOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

uint64_t SizeOf(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Reads up to len bytes of path from its start.
std::string ReadPrefix(const std::string& path, uint64_t len) {
  std::ifstream in(path, std::ios::binary);
  std::string out(len, '\0');
  in.read(out.data(), static_cast<std::streamsize>(len));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

class TrackingFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  TrackingFile(std::unique_ptr<rocksdb::FSWritableFile> file, PowerCutEnv* env,
               int node, std::string name, uint64_t size)
      : FSWritableFileOwnerWrapper(std::move(file)),
        env_(env),
        node_(node),
        name_(std::move(name)),
        size_(size) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data,
                           const rocksdb::IOOptions& o,
                           rocksdb::IODebugContext* dbg) override {
    return Appended(data.size(), size_ + data.size(),
                    [&] { return target()->Append(data, o, dbg); });
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data,
                           const rocksdb::IOOptions& o,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    return Appended(data.size(), size_ + data.size(),
                    [&] { return target()->Append(data, o, info, dbg); });
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data,
                                     uint64_t offset,
                                     const rocksdb::IOOptions& o,
                                     rocksdb::IODebugContext* dbg) override {
    return Appended(data.size(), std::max(size_, offset + data.size()), [&] {
      return target()->PositionedAppend(data, offset, o, dbg);
    });
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data,
                                     uint64_t offset,
                                     const rocksdb::IOOptions& o,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    return Appended(data.size(), std::max(size_, offset + data.size()), [&] {
      return target()->PositionedAppend(data, offset, o, info, dbg);
    });
  }
  rocksdb::IOStatus Truncate(uint64_t size, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
    return Appended(0, size, [&] { return target()->Truncate(size, o, dbg); });
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& o,
                         rocksdb::IODebugContext* dbg) override {
    return Synced([&] { return target()->Sync(o, dbg); });
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o,
                          rocksdb::IODebugContext* dbg) override {
    return Synced([&] { return target()->Fsync(o, dbg); });
  }

 private:
  template <typename Fn>
  rocksdb::IOStatus Appended(size_t n, uint64_t new_size, Fn&& fn) {
    return env_->Op("index append " + name_ + " +" + std::to_string(n), [&] {
      rocksdb::IOStatus st = fn();
      if (st.ok()) {
        size_ = new_size;
        env_->AppendedLocked(node_, size_);
      }
      return st;
    });
  }
  template <typename Fn>
  rocksdb::IOStatus Synced(Fn&& fn) {
    return env_->Op("index sync " + name_, [&] {
      rocksdb::IOStatus st = fn();
      if (st.ok()) env_->SyncedLocked(node_);
      return st;
    });
  }

  PowerCutEnv* env_;
  int node_;
  std::string name_;
  uint64_t size_;
};

class TrackingDir : public rocksdb::FSDirectoryWrapper {
 public:
  TrackingDir(std::unique_ptr<rocksdb::FSDirectory> dir, PowerCutEnv* env,
              std::string name)
      : FSDirectoryWrapper(std::move(dir)), env_(env), name_(std::move(name)) {}
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o,
                          rocksdb::IODebugContext* dbg) override {
    return env_->Op("index dirsync", [&] {
      rocksdb::IOStatus st = FSDirectoryWrapper::Fsync(o, dbg);
      if (st.ok()) env_->SyncDirLocked(name_);
      return st;
    });
  }
  rocksdb::IOStatus FsyncWithDirOptions(
      const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg,
      const rocksdb::DirFsyncOptions& options) override {
    return env_->Op("index dirsync", [&] {
      rocksdb::IOStatus st =
          FSDirectoryWrapper::FsyncWithDirOptions(o, dbg, options);
      if (st.ok()) env_->SyncDirLocked(name_);
      return st;
    });
  }

 private:
  PowerCutEnv* env_;
  std::string name_;
};

class TrackingFs : public rocksdb::FileSystemWrapper {
 public:
  explicit TrackingFs(PowerCutEnv* env)
      : FileSystemWrapper(rocksdb::FileSystem::Default()), env_(env) {}
  const char* Name() const override { return "WavefsPowerCutFs"; }

  rocksdb::IOStatus NewWritableFile(const std::string& f,
                                    const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    const std::string p = Clean(f);
    return env_->Op("index create " + Base(p), [&] {
      rocksdb::IOStatus st = target()->NewWritableFile(f, o, r, dbg);
      if (st.ok() && env_->TrackedLocked(p)) {
        const int node = env_->TrackCreateLocked(p, true);
        *r = std::make_unique<TrackingFile>(std::move(*r), env_, node, Base(p),
                                            0);
      }
      return st;
    });
  }
  rocksdb::IOStatus ReopenWritableFile(
      const std::string& f, const rocksdb::FileOptions& o,
      std::unique_ptr<rocksdb::FSWritableFile>* r,
      rocksdb::IODebugContext* dbg) override {
    const std::string p = Clean(f);
    return env_->Op("index reopen " + Base(p), [&] {
      rocksdb::IOStatus st = target()->ReopenWritableFile(f, o, r, dbg);
      if (st.ok() && env_->TrackedLocked(p)) {
        const int node = env_->AdoptLocked(p, true);
        *r = std::make_unique<TrackingFile>(std::move(*r), env_, node, Base(p),
                                            SizeOf(p));
      }
      return st;
    });
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string&, const std::string&,
                                      const rocksdb::FileOptions&,
                                      std::unique_ptr<rocksdb::FSWritableFile>*,
                                      rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("recycled logs are not modelled");
  }
  rocksdb::IOStatus LinkFile(const std::string&, const std::string&,
                             const rocksdb::IOOptions&,
                             rocksdb::IODebugContext*) override {
    return rocksdb::IOStatus::NotSupported("hard links are not modelled");
  }
  rocksdb::IOStatus NewDirectory(const std::string& name,
                                 const rocksdb::IOOptions& o,
                                 std::unique_ptr<rocksdb::FSDirectory>* r,
                                 rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus st = target()->NewDirectory(name, o, r, dbg);
    if (st.ok()) *r = std::make_unique<TrackingDir>(std::move(*r), env_, name);
    return st;
  }
  rocksdb::IOStatus RenameFile(const std::string& s, const std::string& t,
                               const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override {
    const std::string from = Clean(s), to = Clean(t);
    return env_->Op("index rename " + Base(from) + " -> " + Base(to), [&] {
      env_->BeforeRenameLocked(from, to);
      rocksdb::IOStatus st = target()->RenameFile(s, t, o, dbg);
      if (st.ok()) env_->RenameLocked(from, to);
      return st;
    });
  }
  rocksdb::IOStatus DeleteFile(const std::string& f,
                               const rocksdb::IOOptions& o,
                               rocksdb::IODebugContext* dbg) override {
    const std::string p = Clean(f);
    return env_->Op("index delete " + Base(p), [&] {
      env_->BeforeUnlinkLocked(p);
      rocksdb::IOStatus st = target()->DeleteFile(f, o, dbg);
      if (st.ok()) env_->UnlinkLocked(p);
      return st;
    });
  }
  rocksdb::IOStatus CreateDir(const std::string& d, const rocksdb::IOOptions& o,
                              rocksdb::IODebugContext* dbg) override {
    return MakeDir(d, [&] { return target()->CreateDir(d, o, dbg); });
  }
  rocksdb::IOStatus CreateDirIfMissing(const std::string& d,
                                       const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* dbg) override {
    return MakeDir(d, [&] { return target()->CreateDirIfMissing(d, o, dbg); });
  }

 private:
  static std::string Base(const std::string& p) {
    return p.substr(p.find_last_of('/') + 1);
  }
  template <typename Fn>
  rocksdb::IOStatus MakeDir(const std::string& d, Fn&& fn) {
    const std::string p = Clean(d);
    return env_->Op("index mkdir", [&] {
      const bool existed = IsDir(p);
      rocksdb::IOStatus st = fn();
      if (st.ok() && !existed) env_->MkdirLocked(p);
      return st;
    });
  }

  PowerCutEnv* env_;
};

}  // namespace

const char* TearName(PowerCutEnv::Tear tear) {
  switch (tear) {
    case PowerCutEnv::Tear::kDrop:
      return "drop";
    case PowerCutEnv::Tear::kPrefix:
      return "prefix";
    case PowerCutEnv::Tear::kZeros:
      return "zeros";
    case PowerCutEnv::Tear::kKeep:
      return "keep (kill -9)";
  }
  return "?";
}

PowerCutEnv::PowerCutEnv(std::vector<std::string> roots, std::string work)
    : roots_([&] {
        for (auto& r : roots) r = Clean(r);
        return roots;
      }()),
      work_(Clean(work)) {
  fs::create_directories(work_ + "/grave");
  std::lock_guard<std::mutex> lock(mu_);
  RebaseLocked();
}

PowerCutEnv::~PowerCutEnv() = default;

std::shared_ptr<rocksdb::FileSystem> PowerCutEnv::RocksFileSystem() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!rocks_fs_) rocks_fs_ = std::make_shared<TrackingFs>(this);
  return rocks_fs_;
}

bool PowerCutEnv::TrackedLocked(const std::string& path) const {
  for (const std::string& r : roots_) {
    if (path == r || (path.size() > r.size() && path.starts_with(r) &&
                      path[r.size()] == '/'))
      return true;
  }
  return false;
}

std::string PowerCutEnv::Describe(const std::string& path) const {
  for (const std::string& r : roots_) {
    if (path.starts_with(r)) {
      return path.substr(ParentOf(r).size() + 1);
    }
  }
  return path;
}

void PowerCutEnv::ScanLocked(const std::string& dir) {
  std::error_code ec;
  if (!IsDir(dir)) return;
  base_dirs_.insert(dir);
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string p = Clean(e.path().string());
    if (e.is_directory(ec)) {
      ScanLocked(p);
    } else if (e.is_regular_file(ec)) {
      Node n;
      n.real = p;
      n.size = n.synced = SizeOf(p);
      nodes_.push_back(n);
      base_names_[p] = cur_[p] = static_cast<int>(nodes_.size() - 1);
    }
  }
}

void PowerCutEnv::RebaseLocked() {
  nodes_.clear();
  base_names_.clear();
  base_dirs_.clear();
  cur_.clear();
  ns_.clear();
  durable_ns_ = 0;
  for (const std::string& r : roots_) ScanLocked(r);
}

void PowerCutEnv::ArmCut(uint64_t at, uint64_t seed, Tear index_tear,
                         Tear other_tear) {
  std::lock_guard<std::mutex> lock(mu_);
  ops_ = 0;
  cut_at_ = at;
  cut_ = false;
  cut_op_.clear();
  rng_.seed(seed);
  index_tear_ = index_tear;
  other_tear_ = other_tear;
}

bool PowerCutEnv::cut() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cut_;
}

std::string PowerCutEnv::cut_op() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cut_op_;
}

uint64_t PowerCutEnv::ops() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ops_;
}

void PowerCutEnv::BeforeOpLocked(const std::string& what) {
  if (!cut_ && ops_ == cut_at_) {
    cut_op_ = what;
    Status st = TakeImageLocked();
    if (!st.ok()) cut_op_ += " (image failed: " + st.ToString() + ")";
    cut_ = true;
  }
  ++ops_;
}

int PowerCutEnv::TrackCreateLocked(const std::string& path, bool rocks) {
  if (cur_.count(path)) BuryLocked(path);
  Node n;
  n.real = path;
  n.rocks = rocks;
  nodes_.push_back(n);
  const int id = static_cast<int>(nodes_.size() - 1);
  cur_[path] = id;
  ns_.push_back({NsOp::kCreate, path, "", id});
  return id;
}

int PowerCutEnv::AdoptLocked(const std::string& path, bool rocks) {
  auto it = cur_.find(path);
  if (it != cur_.end()) return it->second;
  // Made without this env (e.g. a log RocksDB opened itself): durable.
  Node n;
  n.real = path;
  n.size = n.synced = SizeOf(path);
  n.rocks = rocks;
  nodes_.push_back(n);
  const int id = static_cast<int>(nodes_.size() - 1);
  cur_[path] = base_names_[path] = id;
  return id;
}

void PowerCutEnv::AppendedLocked(int node, uint64_t new_size) {
  Node& n = nodes_[node];
  n.size = new_size;
  n.synced = std::min(n.synced, new_size);
}

void PowerCutEnv::SyncedLocked(int node) {
  nodes_[node].synced = nodes_[node].size;
}

void PowerCutEnv::SyncDirLocked(const std::string& raw) {
  const std::string dir = Clean(raw);
  for (size_t i = ns_.size(); i > durable_ns_; --i) {
    const NsOp& op = ns_[i - 1];
    const bool touches = ParentOf(op.a) == dir ||
                         (op.kind == NsOp::kRename && ParentOf(op.b) == dir);
    if (touches) {
      durable_ns_ = i;
      return;
    }
  }
}

void PowerCutEnv::BuryLocked(const std::string& path) {
  auto it = cur_.find(path);
  if (it == cur_.end()) return;
  const std::string grave = work_ + "/grave/" + std::to_string(graves_++);
  if (::link(nodes_[it->second].real.c_str(), grave.c_str()) == 0) {
    nodes_[it->second].real = grave;
  }
}

void PowerCutEnv::BeforeRenameLocked(const std::string& from,
                                     const std::string& to) {
  if (TrackedLocked(from) && Exists(from)) AdoptLocked(from, false);
  if (TrackedLocked(to) && Exists(to)) {
    AdoptLocked(to, false);
    BuryLocked(to);
  }
}

void PowerCutEnv::RenameLocked(const std::string& from, const std::string& to) {
  auto it = cur_.find(from);
  if (it == cur_.end()) {
    // From outside the roots into them: a new file there.
    if (TrackedLocked(to)) {
      const int id = TrackCreateLocked(to, false);
      nodes_[id].size = SizeOf(to);
    }
    return;
  }
  const int id = it->second;
  cur_.erase(it);
  if (!TrackedLocked(to)) {
    ns_.push_back({NsOp::kUnlink, from, "", id});
    return;
  }
  cur_[to] = id;
  nodes_[id].real = to;
  ns_.push_back({NsOp::kRename, from, to, id});
}

void PowerCutEnv::BeforeUnlinkLocked(const std::string& path) {
  if (TrackedLocked(path) && Exists(path)) {
    AdoptLocked(path, false);
    BuryLocked(path);
  }
}

void PowerCutEnv::UnlinkLocked(const std::string& path) {
  auto it = cur_.find(path);
  if (it == cur_.end()) return;
  ns_.push_back({NsOp::kUnlink, path, "", it->second});
  cur_.erase(it);
}

void PowerCutEnv::MkdirLocked(const std::string& path) {
  ns_.push_back({NsOp::kMkdir, path, "", -1});
}

Status PowerCutEnv::CreateFile(const std::string& path,
                               std::span<const uint8_t> data, unsigned mode,
                               bool direct) {
  const std::string p = Clean(path);
  if (!TrackedLocked(p))
    return Env::Default()->CreateFile(p, data, mode, direct);
  return Op("create " + Describe(p), [&] {
    Status st = Env::Default()->CreateFile(p, data, mode, direct);
    if (st.ok()) nodes_[TrackCreateLocked(p, false)].size = data.size();
    return st;
  });
}

Status PowerCutEnv::SyncPath(const std::string& path) {
  const std::string p = Clean(path);
  if (!TrackedLocked(p)) return Env::Default()->SyncPath(p);
  return Op("sync " + Describe(p), [&] {
    Status st = Env::Default()->SyncPath(p);
    if (!st.ok()) return st;
    if (IsDir(p)) {
      SyncDirLocked(p);
    } else {
      SyncedLocked(AdoptLocked(p, false));
    }
    return st;
  });
}

Status PowerCutEnv::SyncFs(const std::string& path) {
  return Op("syncfs " + Describe(Clean(path)), [&] {
    Status st = Env::Default()->SyncFs(path);
    if (!st.ok()) return st;
    for (Node& n : nodes_) n.synced = n.size;
    durable_ns_ = ns_.size();
    return st;
  });
}

Status PowerCutEnv::Rename(const std::string& from, const std::string& to) {
  const std::string a = Clean(from), b = Clean(to);
  if (!TrackedLocked(a) && !TrackedLocked(b)) {
    return Env::Default()->Rename(a, b);
  }
  return Op("rename " + Describe(a) + " -> " + Describe(b), [&] {
    BeforeRenameLocked(a, b);
    Status st = Env::Default()->Rename(a, b);
    if (st.ok()) RenameLocked(a, b);
    return st;
  });
}

Status PowerCutEnv::Unlink(const std::string& path) {
  const std::string p = Clean(path);
  if (!TrackedLocked(p)) return Env::Default()->Unlink(p);
  return Op("unlink " + Describe(p), [&] {
    BeforeUnlinkLocked(p);
    Status st = Env::Default()->Unlink(p);
    if (st.ok()) UnlinkLocked(p);
    return st;
  });
}

Status PowerCutEnv::MakeDir(const std::string& path, unsigned mode) {
  const std::string p = Clean(path);
  if (!TrackedLocked(p)) return Env::Default()->MakeDir(p, mode);
  return Op("mkdir " + Describe(p), [&] {
    Status st = Env::Default()->MakeDir(p, mode);
    if (st.ok()) MkdirLocked(p);
    return st;
  });
}

Status PowerCutEnv::TakeImageLocked() {
  const std::string image = work_ + "/image";
  std::error_code ec;
  fs::remove_all(image, ec);
  // Every durable change, then a random prefix of the others (all of them
  // when only the process died).
  const bool killed = index_tear_ == Tear::kKeep && other_tear_ == Tear::kKeep;
  const size_t keep =
      killed ? ns_.size()
             : durable_ns_ + rng_() % (ns_.size() - durable_ns_ + 1);
  std::map<std::string, int> names = base_names_;
  std::set<std::string> dirs = base_dirs_;
  for (size_t i = 0; i < keep; ++i) {
    const NsOp& op = ns_[i];
    switch (op.kind) {
      case NsOp::kCreate:
        names[op.a] = op.node;
        break;
      case NsOp::kRename: {
        auto it = names.find(op.a);
        if (it != names.end()) {
          const int id = it->second;
          names.erase(it);
          names[op.b] = id;
        }
        break;
      }
      case NsOp::kUnlink:
        names.erase(op.a);
        break;
      case NsOp::kMkdir:
        dirs.insert(op.a);
        break;
    }
  }
  for (const std::string& d : dirs) {
    fs::create_directories(image + d, ec);
    if (ec) return Status::Error(Code::kIo, "mkdir " + image + d);
  }
  for (const auto& [path, id] : names) {
    if (!dirs.count(ParentOf(path))) continue;  // its directory never was
    const Node& n = nodes_[id];
    const Tear tear = n.rocks ? index_tear_ : other_tear_;
    const uint64_t unsynced = n.size > n.synced ? n.size - n.synced : 0;
    std::string bytes;
    switch (tear) {
      case Tear::kDrop:
        bytes = ReadPrefix(n.real, n.synced);
        break;
      case Tear::kPrefix:
        bytes = ReadPrefix(n.real, n.synced + rng_() % (unsynced + 1));
        break;
      case Tear::kZeros:
        bytes = ReadPrefix(n.real, n.size);
        if (rng_() % 2 == 0 && bytes.size() > n.synced) {
          std::fill(bytes.begin() + static_cast<std::ptrdiff_t>(n.synced),
                    bytes.end(), '\0');
        }
        break;
      case Tear::kKeep:
        bytes = ReadPrefix(n.real, n.size);
        break;
    }
    std::ofstream out(image + path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) return Status::Error(Code::kIo, "write " + image + path);
  }
  return Status::Ok();
}

Status PowerCutEnv::RestoreImage() {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string image = work_ + "/image";
  std::error_code ec;
  for (const std::string& r : roots_) {
    fs::remove_all(r, ec);
    if (ec)
      return Status::Error(Code::kIo, "remove " + r + ": " + ec.message());
    if (IsDir(image + r)) {
      fs::create_directories(ParentOf(r), ec);
      fs::rename(image + r, r, ec);
      if (ec)
        return Status::Error(Code::kIo, "restore " + r + ": " + ec.message());
    }
  }
  fs::remove_all(image, ec);
  fs::remove_all(work_ + "/grave", ec);
  fs::create_directories(work_ + "/grave", ec);
  cut_ = false;
  cut_at_ = UINT64_MAX;
  RebaseLocked();
  return Status::Ok();
}

}  // namespace testing_util
}  // namespace wavefs
