// gc (store/gc.h) against a Filesystem in use: the live set, and the two
// hazards of collecting while files are written, each with its
// interleaving forced through hooks (FsHooks, GcOptions); every test checks
// that its window was really hit.
#include "store/gc.h"

#include <rocksdb/db.h>

#include <condition_variable>
#include <future>
#include <mutex>

#include "fs_fixture.h"

namespace wavefs {
namespace {

using namespace fs_testing;  // NOLINT
using namespace std::chrono_literals;

// A one-shot latch.
class Latch {
 public:
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

class GcTest : public FsTest {
 protected:
  void MountWithHooks(FsHooks hooks) {
    FsOptions o = TestOptions();
    o.hooks = std::move(hooks);
    Remount(o);
  }
  GcOptions Options() {
    GcOptions o;
    o.memory_refs = [this](const std::function<void(const Address&)>& fn) {
      return fs_->ForEachUncommittedRef(fn);
    };
    return o;
  }
  GcReport Collect(const GcOptions& o) {
    auto r = CollectGarbage(index_.get(), store_.get(), o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : GcReport{};
  }
  size_t StoreCount() {
    size_t n = 0;
    WAVEFS_EXPECT_OK(memory_->List([&](const Address&) { ++n; }));
    return n;
  }
  bool InStore(const Address& a) {
    auto has = memory_->Has(a);
    return has.ok() && *has;
  }
  Address FirstChunkOf(uint64_t ino) {
    auto map = fs_->GetDataMap(ino);
    EXPECT_TRUE(map.ok());
    return map->chunks.begin()->second.address;
  }
};

TEST_F(GcTest, RemovesExactlyTheUnreferencedChunks) {
  const std::string a = RandomBytes(2 * kC, 1);
  const std::string b = RandomBytes(kC, 2);
  const uint64_t ia = WriteFile("a", a);
  WriteFile("b", b);
  Drain();
  ASSERT_EQ(StoreCount(), 3u);
  // b goes; a's first chunk is overwritten: two chunks become garbage.
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "b"));
  const std::string a0 = RandomBytes(kC, 3);
  {
    auto h = OpenH(ia);
    WriteAt(h.get(), 0, a0);
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  }
  Drain();
  ASSERT_EQ(StoreCount(), 4u);

  GcOptions dry = Options();
  dry.dry_run = true;
  GcReport d = Collect(dry);
  EXPECT_EQ(d.removed, 2u);
  EXPECT_EQ(d.removed_bytes, 2 * CiphertextSize(kNewestChunkFormat, kC));
  EXPECT_EQ(StoreCount(), 4u) << "a dry run removes nothing";

  GcReport r = Collect(Options());
  EXPECT_EQ(r.candidates, 2u);
  EXPECT_EQ(r.removed, 2u);
  EXPECT_EQ(r.kept, 0u);
  EXPECT_EQ(StoreCount(), 2u);
  EXPECT_TRUE(SameBytes(a0 + a.substr(kC), ReadFile(ia)));
  EXPECT_EQ(Collect(Options()).removed, 0u) << "a second gc finds nothing";
  Remount();
  EXPECT_TRUE(SameBytes(a0 + a.substr(kC), ReadFile(ia)));
}

// A chunk sealed, staged and uploaded but not yet committed is named only
// by the open file's pending refs.
TEST_F(GcTest, UncommittedChunksOfOpenFilesSurvive) {
  const std::string data = RandomBytes(kC, 4);
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  WriteAt(h.get(), 0, data);
  fs_->SealDirtyForTest(ino);
  ASSERT_TRUE(
      WaitFor([&] { return SpillCount() == 0 && StoreCount() == 1; }, 30s));
  Drain();
  auto committed = index_->GetChunk(ino, 0);
  ASSERT_TRUE(committed.ok());
  ASSERT_FALSE(committed->has_value()) << "the test needs an uncommitted ref";
  GcReport r = Collect(Options());
  EXPECT_EQ(r.removed, 0u);
  EXPECT_EQ(StoreCount(), 1u);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// Hazard (a): a writer of the same bytes as a garbage chunk looked the
// address up (known as stored: no upload) before gc retired it, and records
// its ref only after gc's first look. gc must wait for it at the gate and
// see the ref in its cut.
TEST_F(GcTest, ChunkReferencedByDedupDuringGcSurvives) {
  const std::string data = RandomBytes(kC, 5);
  const uint64_t old_ino = WriteFile("old", data);
  Drain();
  const Address x = FirstChunkOf(old_ino);
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "old"));

  std::atomic<bool> armed{true};
  Latch in_window, release;
  std::atomic<bool> staged_again{false};
  FsHooks hooks;
  hooks.seal_before_record = [&](uint64_t, uint64_t) {
    if (!armed.exchange(false)) return;
    in_window.Open();
    release.Wait();
  };
  hooks.stage_begin = [&](const Address& a, uint64_t) {
    if (a == x) staged_again = true;
    return Status::Ok();
  };
  MountWithHooks(hooks);
  const uint64_t ino = Create("new");
  auto writer = std::async(std::launch::async, [&] {
    auto h = OpenH(ino);
    WriteAt(h.get(), 0, data);  // a full chunk: sealed at once
    WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  });
  in_window.Wait();
  // The seal deduplicated against the store: nothing staged or queued.
  EXPECT_FALSE(staged_again.load());
  EXPECT_FALSE(*index_->IsQueued(x));

  bool retired_at_gate = false;
  GcOptions o = Options();
  o.before_gate = [&] {
    // gc retired x (not referenced at its first look); the seal holds the
    // gate, so gc waits for it to record its ref.
    retired_at_gate = !*index_->IsKnown(x);
    release.Open();
  };
  GcReport r = Collect(o);
  writer.get();
  EXPECT_TRUE(retired_at_gate) << "x was not a candidate: window missed";
  EXPECT_EQ(r.candidates, 1u);
  EXPECT_EQ(r.removed, 0u);
  EXPECT_EQ(r.kept, 1u);
  EXPECT_TRUE(InStore(x));
  EXPECT_TRUE(*index_->IsKnown(x)) << "a kept chunk is known as stored again";
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// Hazard (b), before the deletes: the same bytes are written again after
// gc's cut: the retired address is staged and queued, and gc keeps it.
TEST_F(GcTest, ChunkWrittenAgainAfterTheCutSurvives) {
  const std::string data = RandomBytes(kC, 6);
  const uint64_t old_ino = WriteFile("old", data);
  Drain();
  const Address x = FirstChunkOf(old_ino);
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "old"));
  uint64_t ino = 0;
  bool queued = false;
  GcOptions o = Options();
  o.after_cut = [&] {
    ino = WriteFile("new", data);  // closed: committed, x staged again
    queued = *index_->IsQueued(x) || InStore(x);
  };
  GcReport r = Collect(o);
  EXPECT_TRUE(queued);
  EXPECT_EQ(r.removed, 0u);
  EXPECT_EQ(r.kept, 1u);
  Drain();
  EXPECT_TRUE(InStore(x));
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// Hazard (b), during a delete: the bytes are staged while gc deletes their
// old object. Queueing waits for the delete, so the upload re-creates the
// object instead of being deleted by it (or skipped as already present).
TEST_F(GcTest, ChunkStagedWhileItsObjectIsDeletedSurvives) {
  const std::string data = RandomBytes(kC, 7);
  const uint64_t old_ino = WriteFile("old", data);
  Drain();
  const Address x = FirstChunkOf(old_ino);
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "old"));

  Latch staged;
  FsHooks hooks;
  hooks.stage_end = [&](const Address& a, uint64_t) {
    if (a == x) staged.Open();  // next: EnqueueStaged, which must wait
  };
  MountWithHooks(hooks);
  uint64_t ino = Create("new");
  std::future<void> writer;
  bool queued_during_delete = true;
  GcOptions o = Options();
  o.before_delete = [&](const Address& a) {
    if (a != x) return;
    writer = std::async(std::launch::async, [&] {
      auto h = OpenH(ino);
      WriteAt(h.get(), 0, data);
      WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
    });
    staged.Wait();
    queued_during_delete = *index_->IsQueued(x);
  };
  GcReport r = Collect(o);
  writer.get();
  EXPECT_FALSE(queued_during_delete) << "queueing did not wait for the delete";
  EXPECT_EQ(r.removed, 1u);
  Drain();
  EXPECT_TRUE(InStore(x)) << "the upload after the delete re-creates it";
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// A pin ('P' + address, written by `wavefs share`) keeps a chunk no file
// names any more.
TEST_F(GcTest, PinnedChunksSurvive) {
  const std::string data = RandomBytes(kC, 8);
  const uint64_t ino = WriteFile("shared", data);
  Drain();
  const Address x = FirstChunkOf(ino);
  Unmount();
  {
    // Written straight into RocksDB: the pin API is not gc's.
    rocksdb::DB* db = nullptr;
    rocksdb::Options ro;
    ASSERT_TRUE(rocksdb::DB::Open(ro, *tmp_ / "index", &db).ok());
    std::string key =
        "P" + std::string(reinterpret_cast<const char*>(x.data()), x.size());
    std::string one("\x01\0\0\0\0\0\0\0", 8);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, one).ok());
    delete db;
  }
  Mount();
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "shared"));
  GcReport r = Collect(Options());
  EXPECT_EQ(r.removed, 0u);
  EXPECT_TRUE(InStore(x));
}

}  // namespace
}  // namespace wavefs
