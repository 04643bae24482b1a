// Held chunks (store/index.h): the small last chunk of a file committed
// again and again (a log appended to by separate opens) waits before its
// upload and is dropped when the file's next commit replaces it; any other
// reference to it keeps it, and a reader racing the drop reads the new
// chunk, never EIO.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace fs_testing
}  // namespace wavefs
