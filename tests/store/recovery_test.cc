// Start-up recovery (store/recovery.h): what a crash or a power cut leaves
// in the spill and the index is sorted out before anything runs.
#include "store/recovery.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "chunker/crypto.h"
#include "index_spill_fixture.h"
#include "store/memory_store.h"
#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::MakeBytes;

class RecoveryTest : public testing_util::IndexSpillTest {
 protected:
  // Stages bytes under their real address; queued when asked.
  Address Stage(const std::vector<uint8_t>& bytes, bool queue) {
    const Address a = AddressOf(kNewestChunkFormat, bytes);
    EXPECT_TRUE(spill_->Stage(a, bytes).ok());
    if (queue) {
      EXPECT_TRUE(index_->EnqueueStaged(a, bytes.size()).ok());
    }
    return a;
  }
};

TEST_F(RecoveryTest, TornStagedChunkIsNotUploadedAndStaleOnesGo) {
  const Address good = Stage(MakeBytes(5000, 1), true);
  const Address stale = Stage(MakeBytes(5000, 2), false);
  // A power cut: the queue entry made it to disk, the bytes did not.
  const auto torn_bytes = MakeBytes(5000, 3);
  const Address torn = Stage(torn_bytes, true);
  std::vector<uint8_t> zeros(torn_bytes.size(), 0);
  ASSERT_TRUE(spill_->Remove(torn).ok());
  ASSERT_TRUE(spill_->Stage(torn, zeros).ok());

  auto r = RecoverAtStart(index_.get(), spill_.get(), kNewestChunkFormat);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->staged_verified, 1u);
  EXPECT_EQ(r->torn_staged_removed, 1u);
  EXPECT_EQ(r->stale_staged_removed, 1u);
  EXPECT_TRUE(spill_->Contains(good));
  EXPECT_FALSE(spill_->Contains(stale));
  EXPECT_FALSE(spill_->Contains(torn));
  // The torn chunk stays queued: the uploader takes an intact store copy
  // or reports it lost (uploader_test covers both).
  EXPECT_TRUE(*index_->IsQueued(torn));
}

// A chunk staged in the index has no spill file: recovery must not take it
// for a lost one (its body came back with its queue entry), while a queued
// spill chunk whose file is gone and which the store lacks is lost.
TEST_F(RecoveryTest, ChunkStagedInTheIndexIsNotLost) {
  const auto small = MakeBytes(3000, 4);
  const Address in_index = AddressOf(kNewestChunkFormat, small);
  ASSERT_TRUE(*index_->EnqueueStaged(in_index, small.size(), small));
  const auto big = MakeBytes(5000, 5);
  const Address gone = Stage(big, true);
  ASSERT_TRUE(spill_->Remove(gone).ok());
  // Inode 10 names the chunk in the index, inode 11 the one that is gone.
  IndexBatch b;
  for (const auto& [ino, a] : {std::pair{10ull, in_index}, {11ull, gone}}) {
    ChunkRef ref;
    ref.address = a;
    ref.length = 1000;
    b.PutChunk(ino, 0, ref);
  }
  ASSERT_TRUE(index_->Commit(&b, false).ok());
  MemoryStore store;
  auto r =
      RecoverAtStart(index_.get(), spill_.get(), kNewestChunkFormat, &store);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->lost_ranges.size(), 1u);
  EXPECT_NE(r->lost_ranges[0].find("(inode 11)"), std::string::npos)
      << r->lost_ranges[0];
  EXPECT_TRUE(*index_->IsQueued(in_index));
  std::vector<uint8_t> got;
  ASSERT_TRUE(index_->ReadStagedBody(in_index, &got).ok());
  EXPECT_EQ(got, small);
}

TEST_F(RecoveryTest, OrphanInodesAreReclaimed) {
  InodeAttr a;
  a.ino = index_->AllocateIno();
  a.mode = S_IFREG | 0644;
  a.nlink = 0;
  IndexBatch b;
  b.PutInode(a);
  ASSERT_TRUE(index_->Commit(&b, false).ok());
  auto r = RecoverAtStart(index_.get(), spill_.get(), kNewestChunkFormat);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->orphans_reclaimed, 1u);
  EXPECT_EQ(index_->GetInode(a.ino).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace wavefs
