// Held chunks (store/index.h): the last chunk of a file committed again and
// again (a log appended to by separate opens), and a chunk evicted before
// its file's commit, waits before its upload and is dropped when the next
// version replaces it; any other reference to it keeps it, and a reader
// racing the drop reads the new chunk, never EIO.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "fs_fixture.h"

namespace wavefs {
namespace fs_testing {
namespace {

using namespace std::chrono_literals;

class HeldChunksTest : public FsTest {
 protected:
  // Holds that outlast any test: only a drop or a drain ends them.
  static FsOptions LongHold() {
    FsOptions o = TestOptions();
    o.hot_tail_hold = std::chrono::hours(1);
    // The sealing path of appends: with the tail journal (its own tests,
    // tail_journal_test.cc) appends seal only when the journal ends.
    o.tail_journal = false;
    return o;
  }
  void SetUp() override {
    FsTest::SetUp();
    Remount(LongHold());
  }
  // Appends line to ino through an open of its own, as `echo >> log` does.
  void Append(uint64_t ino, std::string* log, const std::string& line) {
    auto h = OpenH(ino);
    WriteAt(h.get(), log->size(), line);
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
    *log += line;
  }
  // A log appended to twice: its last chunk is held (the first append's
  // is not: the file was not hot yet).
  uint64_t HotLog(std::string* log) {
    const uint64_t ino = Create("log");
    Append(ino, log, "first\n");
    Append(ino, log, "second\n");
    return ino;
  }
};

TEST_F(HeldChunksTest, AppendsUploadOnlyTheFirstAndTheLastTail) {
  std::string log;
  const uint64_t ino = Create("log");
  for (int i = 0; i < 50; ++i)
    Append(ino, &log, "line " + std::to_string(i) + "\n");
  // The first append's chunk is not held (the file was not hot yet); each
  // later one is held, and replaced by the next: 48 never go up.
  EXPECT_EQ(index_->superseded_chunks(), 48u);
  EXPECT_EQ(index_->held_chunks(), 1u);
  EXPECT_EQ(ReadFile(ino), log);
  // A drain (unmount) does not wait for the hold.
  Drain();
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(index_->staged_body_bytes(), 0u);
  EXPECT_EQ(memory_->object_count(), 2u);
  KillAndMount(LongHold());
  EXPECT_EQ(ReadFile(ino), log);
}

TEST_F(HeldChunksTest, AKilledDaemonUploadsWhatItHeld) {
  const auto refused = faults_->FailPuts(
      FaultStore::Permanent("403 AccessDenied"), FaultStore::kForever);
  std::string log;
  const uint64_t ino = Create("log");
  for (int i = 0; i < 5; ++i) Append(ino, &log, std::string(100 + i, 'a' + i));
  EXPECT_EQ(index_->held_chunks(), 1u);
  KillAndMount(LongHold());
  EXPECT_EQ(index_->held_chunks(), 0u) << "holds are not kept across a kill";
  EXPECT_EQ(ReadFile(ino), log);
  faults_->Lift(refused);
  Drain();
  Remount(LongHold());
  EXPECT_EQ(ReadFile(ino), log);
}

TEST_F(HeldChunksTest, AnotherFileWithTheSameBytesKeepsTheChunk) {
  std::string log;
  const uint64_t ino = HotLog(&log);
  ASSERT_EQ(index_->held_chunks(), 1u);
  // A dedup hit: "copy" names the held chunk too.
  const uint64_t copy = WriteFile("copy", log);
  EXPECT_EQ(index_->held_chunks(), 0u);
  const std::string copied = log;
  Append(ino, &log, "third\n");
  EXPECT_EQ(index_->superseded_chunks(), 0u);
  Remount(LongHold());
  EXPECT_EQ(ReadFile(copy), copied);
  EXPECT_EQ(ReadFile(ino), log);
}

TEST_F(HeldChunksTest, CopyFileRangeAndExportsKeepTheChunk) {
  std::string log;
  const uint64_t ino = HotLog(&log);
  ASSERT_EQ(index_->held_chunks(), 1u);
  const uint64_t dst = Create("dst");
  {
    auto in = OpenH(ino);
    auto out = OpenH(dst);
    auto n = fs_->CopyRange(in.get(), 0, out.get(), 0, log.size());
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(*n, log.size());
    WAVEFS_EXPECT_OK(fs_->Release(std::move(out)));
    WAVEFS_EXPECT_OK(fs_->Release(std::move(in)));
  }
  EXPECT_EQ(index_->held_chunks(), 0u) << "the copy shares the chunk";
  const std::string copied = log;
  Append(ino, &log, "third\n");  // held again
  ASSERT_EQ(index_->held_chunks(), 1u);
  // A data map handed out (a share, user.wavefs.map) names it too.
  auto map = fs_->GetDataMap(ino);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  EXPECT_EQ(index_->held_chunks(), 0u);
  const std::string exported = log;
  Append(ino, &log, "fourth\n");
  EXPECT_EQ(index_->superseded_chunks(), 0u);
  Remount(LongHold());
  EXPECT_EQ(ReadFile(dst), copied);
  EXPECT_EQ(ReadFile(ino), log);
  // The exported map's last chunk is in the store.
  ASSERT_FALSE(map->chunks.empty());
  auto has = memory_->Has(map->chunks.back().second.address);
  EXPECT_TRUE(has.ok() && *has);
}

// A reader gets the file's ref, releases the file's lock to fetch the
// chunk, and meanwhile an append replaces (and drops) that held chunk: the
// reader reads the file as it is now instead of failing with EIO.
TEST_F(HeldChunksTest, AReaderRacingTheDropReadsTheNewChunk) {
  std::string log;
  const uint64_t ino = HotLog(&log);
  ASSERT_EQ(index_->held_chunks(), 1u);
  FsOptions options = LongHold();
  std::string appended = log;
  int fired = 0;
  options.hooks.read_unlocked = [&](uint64_t i, uint64_t) {
    if (i != ino || fired++ > 0) return;
    Append(ino, &appended, "third\n");
  };
  KillAndMount(options);         // no cached chunk; holds are gone after a kill
  Append(ino, &log, "again\n");  // not held: the new daemon saw no commit
  Append(ino, &log, "again2\n");  // hot again: held
  appended = log;
  ASSERT_EQ(index_->held_chunks(), 1u);
  fired = 0;
  auto h = OpenH(ino);
  const std::string got = ReadAt(h.get(), 0, 4096);
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(fired, 2) << "the hook ran for the first fetch and the retry";
  EXPECT_EQ(index_->superseded_chunks(), 1u) << "the read's chunk was dropped";
  // The ref was read before the append; the bytes after it: either is a
  // file the reader could have seen, EIO is not.
  EXPECT_TRUE(got == appended || got == log)
      << "read " << got.size() << " bytes";
  EXPECT_EQ(ReadFile(ino), appended);
}

// A last chunk too big for the index (over 64 KiB of ciphertext) is
// staged in the spill: held the same way, and its spill file goes with it.
TEST_F(HeldChunksTest, ATailStagedInTheSpillIsHeldToo) {
  std::string log;
  const uint64_t ino = Create("log");
  Append(ino, &log, RandomBytes(100 << 10, 7));
  for (int i = 0; i < 10; ++i)
    Append(ino, &log, "line " + std::to_string(i) + "\n");
  EXPECT_EQ(index_->superseded_chunks(), 9u);
  EXPECT_EQ(index_->held_chunks(), 1u);
  EXPECT_EQ(index_->staged_body_bytes(), 0u) << "staged in the spill";
  EXPECT_LE(SpillCount(), 2u) << "the replaced versions' files are gone";
  EXPECT_EQ(ReadFile(ino), log);
  Drain();
  EXPECT_EQ(memory_->object_count(), 2u);
  EXPECT_EQ(SpillCount(), 0u);
  KillAndMount(LongHold());
  EXPECT_EQ(ReadFile(ino), log);
}

// The hold is what keeps a chunk from the uploader: without one (0), every
// version goes up as before.
TEST_F(HeldChunksTest, ZeroHoldUploadsEveryVersion) {
  FsOptions options = TestOptions();
  options.hot_tail_hold = 0ms;
  Remount(options);
  std::string log;
  const uint64_t ino = Create("log");
  for (int i = 0; i < 10; ++i) Append(ino, &log, "x" + std::to_string(i));
  EXPECT_EQ(index_->superseded_chunks(), 0u);
  EXPECT_EQ(index_->held_chunks(), 0u);
  Drain();
  EXPECT_EQ(memory_->object_count(), 10u);
  Remount(options);
  EXPECT_EQ(ReadFile(ino), log);
}

// --- chunks evicted before the file's commit ---------------------------------
// A file written all over, with more chunks than it may hold in buffers,
// has its least recently written buffer sealed and staged before the close
// (evicted), and every later write to that chunk seals it again. Each such
// version is held, and dropped (queue entry and spill file) when the next
// one replaces it, so only what the close commits goes up.
class EvictedChunksTest : public HeldChunksTest {
 protected:
  static FsOptions TwoBuffers(FsOptions o) {
    o.dirty_buffers = 4;
    o.max_buffers_per_file = 2;
    // Evicted buffers are sealed as chunks: what happens when paging out
    // is off or every slot is taken (page_out_test.cc has paging).
    o.page_out_slots = 0;
    return o;
  }
  void SetUp() override {
    FsTest::SetUp();
    Remount(TwoBuffers(LongHold()));
  }
};

TEST_F(EvictedChunksTest, OnlyTheVersionTheCloseCommitsGoesUp) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  const std::string model = WriteAllOver(h.get(), "", 4, 100);
  // Before the close: each chunk's versions but the last two (the one
  // maybe still being sealed, and the one before) are gone already, and
  // nothing went up.
  EXPECT_GE(index_->superseded_chunks(), 12u);
  EXPECT_EQ(memory_->object_count(), 0u);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  // Four versions of each of six chunks, three of each replaced before
  // any commit named them: never uploaded, their spill files gone.
  EXPECT_EQ(index_->superseded_chunks(), 18u);
  EXPECT_LE(SpillCount(), 6u);
  EXPECT_EQ(ReadFile(ino), model);
  Drain();
  EXPECT_EQ(memory_->object_count(), 6u);
  EXPECT_EQ(SpillCount(), 0u);
  Remount(TwoBuffers(LongHold()));
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// The hold is what keeps evicted versions from the uploader: without one,
// every version goes up as before.
TEST_F(EvictedChunksTest, ZeroHoldUploadsEveryEvictedVersion) {
  FsOptions options = TwoBuffers(TestOptions());
  options.hot_tail_hold = 0ms;
  Remount(options);
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  const std::string model = WriteAllOver(h.get(), "", 4, 200);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(index_->superseded_chunks(), 0u);
  Drain();
  EXPECT_EQ(memory_->object_count(), 24u);
  Remount(options);
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// A writer that evicts one of its own buffers goes on with the next chunk
// while that buffer is sealed: the seal is held up here until the write
// that evicted it has returned.
TEST_F(EvictedChunksTest, TheWriteThatEvictsDoesNotWaitForTheSeal) {
  const uint64_t ino = Create("f");
  std::mutex mu;
  std::condition_variable cv;
  bool armed = false, write_done = false, held_up = false, timed_out = false;
  FsOptions options = TwoBuffers(LongHold());
  options.hooks.seal_before_record = [&](uint64_t i, uint64_t index) {
    if (i != ino || index != 0) return;
    std::unique_lock<std::mutex> lock(mu);
    if (!armed) return;
    held_up = true;
    timed_out = !cv.wait_for(lock, 20s, [&] { return write_done; });
  };
  Remount(options);
  auto h = OpenH(ino);
  const std::string data = RandomBytes(3 * kC, 600);
  WriteAt(h.get(), 0, data.substr(0, 1000));
  WriteAt(h.get(), kC, data.substr(kC, 1000));
  {
    std::lock_guard<std::mutex> lock(mu);
    armed = true;
  }
  // Chunk 2 evicts chunk 0, whose seal waits for this write.
  WriteAt(h.get(), 2 * kC, data.substr(2 * kC, 1000));
  {
    std::lock_guard<std::mutex> lock(mu);
    write_done = true;
  }
  cv.notify_all();
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(held_up) << "chunk 0 was not evicted by the third chunk";
    EXPECT_FALSE(timed_out) << "the write waited for the seal it started";
  }
  std::string model(2 * kC + 1000, '\0');
  for (uint64_t c = 0; c < 3; ++c)
    model.replace(c * kC, 1000, data.substr(c * kC, 1000));
  Remount(TwoBuffers(LongHold()));
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// A daemon killed while a file it had committed is being rewritten all
// over: the file is as its last close left it, and what was held (never
// committed) is uploaded after the restart, not lost from the queue.
TEST_F(EvictedChunksTest, AKilledWriterLeavesTheClosedFile) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  const std::string closed = WriteAllOver(h.get(), "", 1, 300);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  h = OpenH(ino);
  WriteAllOver(h.get(), closed, 3, 400);
  EXPECT_GT(index_->held_chunks(), 0u);
  EXPECT_GT(index_->superseded_chunks(), 0u);
  h.reset();  // the kill: no release, no commit
  KillAndMount(TwoBuffers(LongHold()));
  EXPECT_TRUE(SameBytes(closed, ReadFile(ino)));
  Drain();
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(SpillCount(), 0u);
  Remount(TwoBuffers(LongHold()));
  EXPECT_TRUE(SameBytes(closed, ReadFile(ino)));
}

// A reader gets chunk 0's ref (an evicted version, staged in the spill),
// releases the file's lock to fetch it, and meanwhile a writer brings the
// chunk back, changes it and evicts it again, which drops the version the
// reader was about to fetch: the reader reads the new one, never EIO.
TEST_F(EvictedChunksTest, AReaderRacingTheDropReadsTheNewVersion) {
  const uint64_t ino = Create("f");
  std::unique_ptr<FileHandle> w;
  std::string model;
  const std::string piece = RandomBytes(4096, 501);
  bool armed = false, dropped = false;
  int fired = 0;
  FsOptions options = TwoBuffers(LongHold());
  options.hooks.read_unlocked = [&](uint64_t i, uint64_t index) {
    if (i != ino || index != 0 || !armed || fired++ > 0) return;
    const uint64_t before = index_->superseded_chunks();
    WriteAt(w.get(), 1000, piece);
    // Two more chunks evict chunk 0 (the least recently written).
    WriteAt(w.get(), 1 * kC + 200000, model.substr(1 * kC + 200000, 10));
    WriteAt(w.get(), 2 * kC + 200000, model.substr(2 * kC + 200000, 10));
    for (int t = 0; t < 1000 && index_->superseded_chunks() == before; ++t)
      std::this_thread::sleep_for(10ms);
    dropped = index_->superseded_chunks() > before;
  };
  Remount(options);
  w = OpenH(ino);
  model = WriteAllOver(w.get(), "", 1, 500);
  std::string changed = model;
  changed.replace(1000, piece.size(), piece);
  ASSERT_GT(index_->held_chunks(), 0u) << "chunk 0 was evicted and held";
  armed = true;
  auto r = OpenH(ino);
  const std::string got = ReadAt(r.get(), 0, 300000);
  EXPECT_TRUE(dropped) << "the version the read fetched was not dropped";
  EXPECT_GE(fired, 2) << "the hook ran for the first fetch and the retry";
  EXPECT_TRUE(SameBytes(changed.substr(0, 300000), got));
  WAVEFS_EXPECT_OK(fs_->Release(std::move(r)));
  WAVEFS_EXPECT_OK(fs_->Release(std::move(w)));
  Drain();
  Remount(TwoBuffers(LongHold()));
  EXPECT_TRUE(SameBytes(changed, ReadFile(ino)));
}

}  // namespace
}  // namespace fs_testing
}  // namespace wavefs
