// The four races issue 7 found by reading the code, each with its
// interleaving forced through FsHooks (no sleeps, no luck): every test
// checks that its hook really ran, so it cannot pass by missing the window.
#include <fcntl.h>
#include <unistd.h>

#include <condition_variable>
#include <set>
#include <thread>

#include "fs/filesystem.h"
#include "fs_fixture.h"

namespace wavefs {
namespace {

using namespace fs_testing;  // NOLINT
using namespace std::chrono_literals;

class FsRaceTest : public FsTest {
 protected:
  // Remounts with hooks set by the test.
  void MountWithHooks(FsHooks hooks) {
    FsOptions o = TestOptions();
    o.hooks = std::move(hooks);
    Remount(o);
  }
};

// A failed seal drops the file's uncommitted writes. Whoever runs the
// commit that notices (another handle's flush, a touch), the handle that
// wrote must still get the error from its own close.
TEST_F(FsRaceTest, DroppedWritesReachTheirWriterWhoeverCommits) {
  std::atomic<int> faults{0};
  FsHooks hooks;
  hooks.stage_fault = [&](const Address&) {
    faults += 1;
    return Status::Error(Code::kIo, "injected stage failure", EIO);
  };
  MountWithHooks(hooks);
  const uint64_t ino = Create("f");
  auto writer = OpenH(ino);
  auto other = OpenH(ino);
  WriteAt(writer.get(), 0, RandomBytes(100, 1));
  // The other handle's flush seals the writer's buffer and hits the fault;
  // it wrote nothing, so it is not the one to be told.
  WAVEFS_EXPECT_OK(fs_->Flush(other.get()));
  EXPECT_EQ(faults.load(), 1);
  // A touch meanwhile must not swallow it either.
  AttrChange touch;
  touch.mtime = timespec{1000, 0};
  EXPECT_TRUE(fs_->SetAttr(ino, touch).ok());
  Status st = fs_->Flush(writer.get());
  EXPECT_EQ(st.code(), Code::kIo) << st.ToString();
  EXPECT_EQ(ErrnoOf(st), EIO);
  // Reported once; the file holds its committed content (empty).
  WAVEFS_EXPECT_OK(fs_->Flush(writer.get()));
  WAVEFS_EXPECT_OK(fs_->Release(std::move(other)));
  WAVEFS_EXPECT_OK(fs_->Release(std::move(writer)));
  EXPECT_EQ(SizeOf(ino), 0u);
}

// A namespace change (here a hard link) of an open file whose close
// commits a new size in the middle of the change: the link must not write
// the size it saw before back over the close's.
TEST_F(FsRaceTest, NamespaceChangeDoesNotOverwriteAConcurrentCommit) {
  std::atomic<int> ran{0};
  FileHandle* target = nullptr;
  FsHooks hooks;
  hooks.ns_before_commit = [&] {
    if (target == nullptr || ran.fetch_add(1) > 0) return;
    WAVEFS_EXPECT_OK(fs_->Flush(target));  // commits the new size now
  };
  MountWithHooks(hooks);
  const uint64_t ino = WriteFile("f", RandomBytes(1000, 2));
  const std::string data = RandomBytes(5 * kC / 4 + 3, 3);
  auto h = OpenH(ino);
  WriteAt(h.get(), 0, data);
  target = h.get();
  auto linked = fs_->Link(ino, kRootIno, "g");
  ASSERT_TRUE(linked.ok()) << linked.status().ToString();
  EXPECT_EQ(ran.load(), 1);
  target = nullptr;
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  Remount();
  EXPECT_EQ(SizeOf(ino), data.size());
  EXPECT_EQ(fs_->GetAttr(ino)->nlink, 2u);
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// A truncate that has to bring the new last chunk in releases the file
// lock meanwhile; a chunk past the new end sealed in that window must not
// come back when its seal finishes after the truncate.
TEST_F(FsRaceTest, TruncateDiscardsAChunkSealedInItsWindow) {
  std::atomic<uint64_t> ino{0};
  std::atomic<int> submitted{0};
  std::atomic<int> recorded_late{0};
  const uint64_t cut = kC + 100;
  FsHooks hooks;
  hooks.acquire_unlocked = [&](uint64_t i, uint64_t idx) {
    if (i != ino.load() || idx != 1 || submitted.fetch_add(1) > 0) return;
    fs_->SealDirtyForTest(i);  // chunk 2 goes to a seal thread now
  };
  hooks.seal_before_record = [&](uint64_t i, uint64_t idx) {
    if (i != ino.load() || idx != 2) return;
    // Record only once the truncate has cut the file.
    ASSERT_TRUE(WaitFor([&] { return SizeOf(i) == cut; }, 30s));
    recorded_late += 1;
  };
  MountWithHooks(hooks);
  const std::string data = RandomBytes(3 * kC, 4);
  const uint64_t f = WriteFile("f", data);
  auto h = OpenH(f);
  WriteAt(h.get(), 2 * kC + 10, "dirty");  // chunk 2 dirty, not sealed
  ino = f;
  WAVEFS_ASSERT_OK(Truncate(f, cut));
  ino = 0;
  EXPECT_EQ(submitted.load(), 1);
  EXPECT_EQ(recorded_late.load(), 1);
  WAVEFS_ASSERT_OK(Truncate(f, 3 * kC));  // extend: zeros past the cut
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  std::string want = data.substr(0, cut);
  want.resize(3 * kC, '\0');
  EXPECT_TRUE(SameBytes(want, ReadFile(f)));
  Remount();
  EXPECT_TRUE(SameBytes(want, ReadFile(f)));
}

// Two files with the same chunk: the first writer checks "not known yet",
// and before it stages, the second writer's copy is staged, uploaded and
// removed from the spill. The first then stages a copy nobody queues: it
// must not stay in the spill (taking space no upload frees) until the next
// mount.
TEST_F(FsRaceTest, LateDuplicateStageLeavesNoStrayFileInTheSpill) {
  std::atomic<int> stages{0};
  std::atomic<bool> other_done{false};
  FsHooks hooks;
  hooks.stage_begin = [&](const Address&, uint64_t) {
    if (stages.fetch_add(1) != 0) return Status::Ok();
    // The first stage waits until the other copy went all the way.
    EXPECT_TRUE(WaitFor([&] { return other_done.load(); }, 30s));
    return Status::Ok();
  };
  MountWithHooks(hooks);
  const std::string data = RandomBytes(kC, 9);
  const uint64_t a = Create("a");
  auto ha = OpenH(a);
  WriteAt(ha.get(), 0, data);
  fs_->SealDirtyForTest(a);  // a's seal thread blocks in stage_begin
  ASSERT_TRUE(WaitFor([&] { return stages.load() == 1; }, 30s));
  const uint64_t b = WriteFile("b", data);  // stages, queues the same chunk
  Drain();                                  // uploaded, gone from the spill
  EXPECT_EQ(SpillCount(), 0u);
  other_done = true;
  WAVEFS_ASSERT_OK(fs_->Release(std::move(ha)));
  Drain();
  EXPECT_EQ(stages.load(), 2);
  EXPECT_EQ(SpillCount(), 0u) << "a staged copy no queue entry names";
  EXPECT_TRUE(SameBytes(data, ReadFile(a)));
  EXPECT_TRUE(SameBytes(data, ReadFile(b)));
}

// An unlink whose index write fails leaves the name, so the file must
// survive its last close too.
TEST_F(FsRaceTest, FailedUnlinkOfAnOpenFileKeepsIt) {
  std::atomic<bool> fail{false};
  std::atomic<int> failed{0};
  FsHooks hooks;
  hooks.ns_commit_fault = [&] {
    if (!fail.load()) return Status::Ok();
    failed += 1;
    return Status::Error(Code::kIo, "injected index failure", EROFS);
  };
  MountWithHooks(hooks);
  const std::string data = RandomBytes(kC + 7, 5);
  const uint64_t ino = WriteFile("f", data);
  auto h = OpenH(ino);
  fail = true;
  Status st = fs_->Unlink(kRootIno, "f");
  fail = false;
  EXPECT_EQ(failed.load(), 1);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(ErrnoOf(st), EROFS);  // the saved errno, not a blanket EIO
  EXPECT_EQ(fs_->GetAttr(ino)->nlink, 1u);
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  auto found = fs_->Lookup(kRootIno, "f");
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// A close seals its file with the file's lock released. Another handle
// (another process) that writes past the end in that window would miss the
// seal while the close commits the size it made: killed right after, the
// file would hold what was closed plus a run of zeros. Such a write waits
// for the seal to end (OpenFile::commits) and lands after the commit.
TEST_F(FsRaceTest, WriteDuringACloseSealWaitsForItsCommit) {
  std::atomic<uint64_t> ino{0};
  std::atomic<int> ran{0};
  std::atomic<int> waits{0};
  std::atomic<bool> written{false};
  FileHandle* other = nullptr;
  const std::string extra = RandomBytes(5000, 21);
  std::thread writer_thread;
  FsHooks hooks;
  hooks.change_waits = [&](uint64_t i) {
    if (i == ino.load()) waits += 1;
  };
  hooks.seal_before_record = [&](uint64_t i, uint64_t) {
    if (i != ino.load() || ran.fetch_add(1) > 0) return;
    writer_thread = std::thread([&] {
      auto n = fs_->Write(other, kC + 10, extra.data(), extra.size());
      EXPECT_TRUE(n.ok() && *n == extra.size());
      written = true;
    });
    // The write is now waiting for this seal's commit.
    ASSERT_TRUE(WaitFor([&] { return waits.load() == 1; }, 30s));
    EXPECT_FALSE(written.load());
  };
  MountWithHooks(hooks);
  const uint64_t f = Create("f");
  auto closer = OpenH(f);
  auto writer = OpenH(f);
  const std::string data = RandomBytes(1000, 22);
  WriteAt(closer.get(), 0, data);
  other = writer.get();
  ino = f;
  WAVEFS_ASSERT_OK(fs_->Flush(closer.get()));
  writer_thread.join();
  ino = 0;
  ASSERT_EQ(ran.load(), 1);
  ASSERT_TRUE(written.load());
  // The writer's bytes are there until the kill, and go with it.
  EXPECT_EQ(SizeOf(f), kC + 10 + extra.size());
  closer.reset();  // the kill: no release, no commit
  writer.reset();
  KillAndMount();
  EXPECT_TRUE(SameBytes(data, ReadFile(f)));
}

// The same with a cut too: another handle empties the file and another
// writes past the end while the close seals. Both wait for its commit;
// killed after the cut's commit, the file is what one order of the two
// makes, not a run of zeros where the write was.
TEST_F(FsRaceTest, CutAndWriteDuringACloseSealWaitForItsCommit) {
  std::atomic<uint64_t> ino{0};
  std::atomic<int> ran{0};
  std::atomic<int> waits{0};
  FileHandle* other = nullptr;
  const std::string extra = RandomBytes(5000, 23);
  std::thread cutter;
  std::thread writer_thread;
  FsHooks hooks;
  hooks.change_waits = [&](uint64_t i) {
    if (i == ino.load()) waits += 1;
  };
  hooks.seal_before_record = [&](uint64_t i, uint64_t) {
    if (i != ino.load() || ran.fetch_add(1) > 0) return;
    cutter = std::thread([&, i] { WAVEFS_EXPECT_OK(Truncate(i, 0)); });
    writer_thread = std::thread([&] {
      auto n = fs_->Write(other, kC + 10, extra.data(), extra.size());
      EXPECT_TRUE(n.ok() && *n == extra.size());
    });
    ASSERT_TRUE(WaitFor([&] { return waits.load() == 2; }, 30s));
  };
  MountWithHooks(hooks);
  const uint64_t f = Create("f");
  auto closer = OpenH(f);
  auto writer = OpenH(f);
  WriteAt(closer.get(), 0, RandomBytes(1000, 24));
  other = writer.get();
  ino = f;
  WAVEFS_ASSERT_OK(fs_->Flush(closer.get()));
  cutter.join();
  writer_thread.join();
  ino = 0;
  ASSERT_GE(ran.load(), 1);  // the cut's own commit seals too
  closer.reset();            // the kill
  writer.reset();
  KillAndMount();
  // Write then cut: empty. Cut then write: the cut's commit (which waited
  // for the write) sealed the write's bytes with their size.
  const std::string got = ReadFile(f);
  std::string cut_then_write(kC + 10, '\0');
  cut_then_write += extra;
  EXPECT_TRUE(got.empty() || SameBytes(cut_then_write, got))
      << "a file of " << got.size() << " bytes that no order of the cut "
      << "and the write makes";
}

// A store that moves a staged file in at put time (as the local store does
// with rename) and makes puts durable only at Sync(); its PutFile then
// holds the uploader until the test lets go, i.e. inside the window
// between a put and the wave's Sync.
class MovingStore : public MemoryStore {
 public:
  Status PutFile(const Address& address, const std::string& path,
                 std::vector<uint8_t>* scratch) override {
    WAVEFS_RETURN_IF_ERROR(MemoryStore::PutFile(address, path, scratch));
    ::unlink(path.c_str());
    std::unique_lock<std::mutex> lock(mu_);
    put_.push_back(address);
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
    return Status::Ok();
  }
  Status Sync() override {
    std::lock_guard<std::mutex> lock(mu_);
    durable_.insert(put_.begin(), put_.end());
    return Status::Ok();
  }
  size_t puts() {
    std::lock_guard<std::mutex> lock(mu_);
    return put_.size();
  }
  bool Durable(const Address& a) {
    std::lock_guard<std::mutex> lock(mu_);
    return durable_.count(a) > 0;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Address> put_;
  std::set<Address> durable_;
  bool released_ = false;
};

class FsMovingStoreTest : public FsTest {
 protected:
  std::unique_ptr<MemoryStore> MakeMemoryStore() override {
    auto s = std::make_unique<MovingStore>();
    moving_ = s.get();
    return s;
  }
  void TearDown() override {
    moving_->Release();
    FsTest::TearDown();
  }
  MovingStore* moving_ = nullptr;
};

// Regression (issue 9): fsync took "no longer in the spill" for "safe in
// the store", but the chunk was moved in and not yet synced there.
TEST_F(FsMovingStoreTest, FsyncSyncsAChunkMovedIntoTheStoreButNotSynced) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  WriteAt(h.get(), 0, RandomBytes(kC, 71));  // a full chunk: sealed, staged
  // The seal thread records the ref after it queued the chunk, so the put
  // can come first: wait for both.
  ASSERT_TRUE(WaitFor(
      [&] {
        auto m = fs_->GetDataMap(ino);
        return moving_->puts() == 1 && m.ok() && m->chunks.size() == 1;
      },
      30s));
  auto refs = fs_->GetDataMap(ino);
  ASSERT_TRUE(refs.ok() && refs->chunks.size() == 1);
  const Address a = refs->chunks[0].second.address;
  EXPECT_EQ(SpillCount(), 0u);        // moved out of the spill...
  EXPECT_FALSE(moving_->Durable(a));  // ...and not durable in the store yet
  WAVEFS_ASSERT_OK(fs_->Fsync(h.get()));
  EXPECT_TRUE(moving_->Durable(a));
  moving_->Release();
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
}

}  // namespace
}  // namespace wavefs
