// PowerCutEnv: an Env (store/env.h) that can cut the power.
//
// It performs every call for real on the underlying files and records what
// a power cut could undo: bytes written since a file was last synced, and
// directory changes (creates, renames, unlinks, mkdirs) since the directory
// was last synced. Armed with ArmCut(n), it takes a "crash image" just
// before the n-th mutating call (a call of this Env or of the RocksDB file
// system it hands out): the tree of files a machine could find after
// rebooting at that moment. The system under test goes on running (it
// cannot tell); RestoreImage() then replaces the tracked directories with
// the image, and the test reopens everything on it.
//
// The model (as LevelDB's FaultInjectionTestEnv, plus tearing):
// - Directory changes form one ordered journal (as ext4's and XFS's do). A
//   sync of a directory makes every change so far that touched it durable,
//   and with it every earlier change; syncfs makes all of them durable. The
//   image keeps every durable change plus a random prefix of the others.
// - File bytes are durable up to the size at the file's last fsync (or
//   syncfs). What the image keeps of the rest depends on the Tear mode:
//   none (kDrop), a random prefix (kPrefix), or the full length with the
//   unsynced bytes zeroed (kZeros: XFS's and ext4's data=writeback's null
//   bytes). RocksDB's files and the other files have separate modes.
// Files that existed when the env was made (or at the last RestoreImage)
// are durable. Unlinked and replaced files are kept as hard links in the
// graveyard directory so the image can bring them back.
//
// Thread safety: every call is serialised by one mutex (tests only).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "store/env.h"

namespace wavefs {
namespace testing_util {

class PowerCutEnv : public Env {
 public:
  // kKeep: everything written survives, names and bytes: what the disk
  // holds when only the process dies (kill -9), not the machine.
  enum class Tear { kDrop, kPrefix, kZeros, kKeep };

  // roots: absolute directories whose contents are tracked (they may not
  // exist yet). work: an absolute scratch directory on the same file system
  // (graveyard and image live there).
  PowerCutEnv(std::vector<std::string> roots, std::string work);
  ~PowerCutEnv() override;

  // Env.
  Status CreateFile(const std::string& path, std::span<const uint8_t> data,
                    unsigned mode, bool direct) override;
  Status SyncPath(const std::string& path) override;
  Status SyncFs(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status Unlink(const std::string& path) override;
  Status MakeDir(const std::string& path, unsigned mode) override;
  std::shared_ptr<rocksdb::FileSystem> RocksFileSystem() override;

  // Cuts the power just before mutating call number `at` (counted from 0
  // since this call). seed drives every random choice of the image.
  void ArmCut(uint64_t at, uint64_t seed, Tear index_tear, Tear other_tear);
  bool cut() const;
  // What the call at the cut was ("" before a cut), e.g. "rename
  // spill/.tmp.1.2.ab12.. -> store/ab/ab12..".
  std::string cut_op() const;
  // Mutating calls since the last ArmCut (or construction).
  uint64_t ops() const;
  // Replaces each root with its part of the image; everything in it then
  // counts as durable. Call with nothing running on the roots.
  Status RestoreImage();

  // --- used by the RocksDB file system wrapper ----------------------------
  // Every tracked call runs under Op(); it counts the call and cuts the
  // power before running fn when the count says so.
  template <typename Fn>
  auto Op(const std::string& what, Fn&& fn) {
    std::lock_guard<std::mutex> lock(mu_);
    BeforeOpLocked(what);
    return fn();
  }
  // The following need mu_ held (call them inside Op's fn).
  int TrackCreateLocked(const std::string& path, bool rocks);
  int AdoptLocked(const std::string& path, bool rocks);
  void AppendedLocked(int node, uint64_t new_size);
  void SyncedLocked(int node);
  void SyncDirLocked(const std::string& dir);
  // Before a rename or unlink: remembers the files it will replace or
  // remove (hard links in the graveyard). After: updates the names.
  void BeforeRenameLocked(const std::string& from, const std::string& to);
  void RenameLocked(const std::string& from, const std::string& to);
  void BeforeUnlinkLocked(const std::string& path);
  void UnlinkLocked(const std::string& path);
  void MkdirLocked(const std::string& path);
  bool TrackedLocked(const std::string& path) const;

 private:
  struct Node {
    std::string real;  // where its bytes are now (a name or the graveyard)
    uint64_t size = 0;
    uint64_t synced = 0;
    bool rocks = false;
  };
  struct NsOp {
    enum Kind { kCreate, kRename, kUnlink, kMkdir } kind;
    std::string a, b;
    int node = -1;
  };

  void BeforeOpLocked(const std::string& what);
  void RebaseLocked();
  void ScanLocked(const std::string& dir);
  void BuryLocked(const std::string& path);  // keeps a hard link
  Status TakeImageLocked();
  std::string Describe(const std::string& path) const;

  const std::vector<std::string> roots_;
  const std::string work_;
  mutable std::mutex mu_;
  std::vector<Node> nodes_;
  std::map<std::string, int> base_names_;
  std::set<std::string> base_dirs_;
  std::map<std::string, int> cur_;
  std::vector<NsOp> ns_;
  size_t durable_ns_ = 0;
  uint64_t ops_ = 0;
  uint64_t graves_ = 0;
  uint64_t cut_at_ = UINT64_MAX;
  bool cut_ = false;
  std::string cut_op_;
  std::mt19937_64 rng_;
  Tear index_tear_ = Tear::kDrop;
  Tear other_tear_ = Tear::kDrop;
  std::shared_ptr<rocksdb::FileSystem> rocks_fs_;
};

const char* TearName(PowerCutEnv::Tear tear);

}  // namespace testing_util
}  // namespace wavefs
