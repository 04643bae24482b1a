// Small chunks staged in the index (FsOptions::index_stage_max): no spill
// file, read back from the index until uploaded, kept across a crash, and
// in the store after the upload, exactly like a chunk staged in the spill.
#include <gtest/gtest.h>

#include "fs_fixture.h"
#include "store/fsck.h"

namespace wavefs {
namespace fs_testing {
namespace {

using FsIndexStageTest = FsTest;

uint64_t Ct(size_t len) { return CiphertextSize(kNewestChunkFormat, len); }

Address ChunkAddress(Index* index, uint64_t ino, uint64_t i) {
  auto ref = index->GetChunk(ino, i);
  EXPECT_TRUE(ref.ok() && ref->has_value());
  return ref.ok() && ref->has_value() ? (*ref)->address : Address{};
}

TEST_F(FsIndexStageTest, SmallChunksSkipTheSpillAndReadBackFromTheIndex) {
  ASSERT_LE(Ct(20000), TestOptions().index_stage_max);
  ASSERT_GT(Ct(70000), TestOptions().index_stage_max);
  // Nothing reaches the store until the end: every byte below is read
  // from where it was staged.
  const auto refused = faults_->FailPuts(
      FaultStore::Permanent("403 AccessDenied"), FaultStore::kForever);
  const std::string small = RandomBytes(1000, 31);
  const std::string mixed = RandomBytes(kC + 20000, 32);  // full + tail
  const std::string over = RandomBytes(70000, 33);        // past the limit
  const uint64_t s = WriteFile("small", small);
  const uint64_t m = WriteFile("mixed", mixed);
  const uint64_t o = WriteFile("over", over);

  EXPECT_EQ(SpillCount(), 2u) << "mixed's full chunk and over";
  EXPECT_FALSE(spill_->Contains(ChunkAddress(index_.get(), s, 0)));
  EXPECT_FALSE(spill_->Contains(ChunkAddress(index_.get(), m, 1)));
  EXPECT_TRUE(spill_->Contains(ChunkAddress(index_.get(), m, 0)));
  EXPECT_TRUE(spill_->Contains(ChunkAddress(index_.get(), o, 0)));
  EXPECT_EQ(index_->staged_body_bytes(), Ct(1000) + Ct(20000));
  EXPECT_EQ(index_->pending_chunks(), 4u);

  // fsck finds every staged chunk where it is, intact.
  FsckOptions fo;
  fo.verify = true;
  auto report = CheckStore(index_.get(), spill_.get(), store_.get(), fo);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();

  // A cold read (the daemon killed: no cache, nothing drained) of every
  // file, partial reads too, without a single store get.
  KillAndMount();
  const uint64_t gets = store_->gets();
  EXPECT_TRUE(SameBytes(small, ReadFile(s)));
  EXPECT_TRUE(SameBytes(mixed, ReadFile(m)));
  EXPECT_TRUE(SameBytes(over, ReadFile(o)));
  auto h = OpenH(m);
  EXPECT_TRUE(SameBytes(mixed.substr(kC + 12345, 100),
                        ReadAt(h.get(), kC + 12345, 100)));
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(store_->gets(), gets) << "read from a store that has nothing";
  EXPECT_EQ(index_->staged_body_bytes(), Ct(1000) + Ct(20000));

  faults_->Lift(refused);
  Drain();
  EXPECT_EQ(index_->staged_body_bytes(), 0u);
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_EQ(memory_->object_count(), 4u);
  // The index no longer has them: these reads go to the store.
  Remount();
  EXPECT_TRUE(SameBytes(small, ReadFile(s)));
  EXPECT_TRUE(SameBytes(mixed, ReadFile(m)));
  EXPECT_TRUE(SameBytes(over, ReadFile(o)));
  EXPECT_GE(store_->gets() - gets, 4u);
}

// The index holds at most index_stage_cap bytes waiting for the uploader;
// past that, small chunks go to the spill as before.
TEST_F(FsIndexStageTest, PastTheCapSmallChunksGoToTheSpill) {
  FsOptions options = TestOptions();
  options.index_stage_cap = 2 * Ct(1000);
  Remount(options);
  const auto refused = faults_->FailPuts(
      FaultStore::Permanent("403 AccessDenied"), FaultStore::kForever);
  std::vector<std::pair<uint64_t, std::string>> files;
  for (int i = 0; i < 3; ++i) {
    std::string data = RandomBytes(1000, 40 + i);
    files.emplace_back(WriteFile("f" + std::to_string(i), data), data);
  }
  EXPECT_EQ(index_->staged_body_bytes(), 2 * Ct(1000));
  EXPECT_EQ(SpillCount(), 1u);
  faults_->Lift(refused);
  Drain();
  EXPECT_EQ(index_->staged_body_bytes(), 0u);
  EXPECT_EQ(memory_->object_count(), 3u);
  Remount(options);
  for (const auto& [ino, data] : files)
    EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

TEST_F(FsIndexStageTest, ZeroLimitStagesEverythingInTheSpill) {
  FsOptions options = TestOptions();
  options.index_stage_max = 0;
  Remount(options);
  const auto refused = faults_->FailPuts(
      FaultStore::Permanent("403 AccessDenied"), FaultStore::kForever);
  const std::string data = RandomBytes(1000, 50);
  const uint64_t ino = WriteFile("f", data);
  EXPECT_EQ(SpillCount(), 1u);
  EXPECT_EQ(index_->staged_body_bytes(), 0u);
  faults_->Lift(refused);
  Remount(options);
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// A small file rewritten in place many times (an append log): every
// version's chunk is staged in the index and uploaded; what stays is the
// last version, and the index holds no body once the uploads are done.
TEST_F(FsIndexStageTest, AppendsLeaveNoBodiesBehind) {
  std::string log;
  const uint64_t ino = Create("log");
  for (int i = 0; i < 50; ++i) {
    const std::string line = "line " + std::to_string(i) + "\n";
    auto h = OpenH(ino);
    WriteAt(h.get(), log.size(), line);
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
    log += line;
  }
  EXPECT_EQ(SpillCount(), 0u);
  Drain();
  EXPECT_EQ(index_->staged_body_bytes(), 0u);
  KillAndMount();
  EXPECT_EQ(ReadFile(ino), log);
}

}  // namespace
}  // namespace fs_testing
}  // namespace wavefs
