// fsck's index checks (store/fsck.h) on an index built record by record:
// what `wavefs fsck --repair` does offline to records no file owns.
#include "store/fsck.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>

#include "chunker/crypto.h"
#include "index_spill_fixture.h"
#include "store/memory_store.h"
#include "store_test_util.h"

namespace wavefs {
namespace {

class FsckTest : public testing_util::IndexSpillTest {
 protected:
  FsckReport Check(bool repair) {
    FsckOptions o;
    o.repair = repair;
    o.index_repair = repair;
    auto r = CheckStore(index_.get(), spill_.get(), &store_, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : FsckReport{};
  }
  size_t Refs(uint64_t ino) {
    size_t n = 0;
    WAVEFS_EXPECT_OK(
        index_->ListChunks(ino, [&](uint64_t, const ChunkRef&) { ++n; }));
    return n;
  }
  static bool Has(const std::vector<std::string>& lines,
                  const std::string& line) {
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  }
  MemoryStore store_;
};

// Chunk refs whose inode record is gone (an index damaged by hand or by a
// bug) are reported, and removed by --repair; a file's own refs stay.
TEST_F(FsckTest, RepairRemovesChunkRefsOfMissingInodesOnly) {
  InodeAttr file;
  file.ino = index_->AllocateIno();
  file.mode = S_IFREG | 0644;
  file.nlink = 1;
  file.size = 3 * kChunkSize;
  const uint64_t missing = file.ino + 100;
  ChunkRef hole;
  hole.hole = true;
  hole.length = kChunkSize;
  ChunkRef stray;
  stray.length = 10;
  stray.address[0] = 7;
  IndexBatch b;
  b.PutInode(file);
  b.PutDirEntry(kRootIno, "f", file.ino, file.mode);
  for (uint64_t i = 0; i < 3; ++i) {
    b.PutChunk(file.ino, i, hole);
    b.PutChunk(missing, i, stray);
  }
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));

  const std::string line =
      "chunk refs of missing inode " + std::to_string(missing);
  FsckReport found = Check(false);
  EXPECT_TRUE(Has(found.problems, line)) << found.Text();
  EXPECT_EQ(found.ExitCode(), 4);
  EXPECT_EQ(Refs(missing), 3u);

  FsckReport fixed = Check(true);
  EXPECT_TRUE(Has(fixed.corrected, line + ": removed")) << fixed.Text();
  EXPECT_TRUE(fixed.problems.empty()) << fixed.Text();
  EXPECT_EQ(fixed.ExitCode(), 1);
  EXPECT_EQ(Refs(missing), 0u);
  EXPECT_EQ(Refs(file.ino), 3u);

  FsckReport clean = Check(false);
  EXPECT_TRUE(clean.problems.empty()) << clean.Text();
  EXPECT_EQ(clean.ExitCode(), 0) << clean.Text();
  EXPECT_EQ(Refs(file.ino), 3u);
}

// Format 4's address covers the tags and the trailer only: --verify opens
// the object under the key its data map holds, so a flipped byte inside a
// segment is found, and named by the file range it damages.
TEST_F(FsckTest, VerifyOfFormat4OpensEachChunkUnderItsKey) {
  const ChunkFormat f4 = ChunkFormat::kTagAddressed;
  const size_t len = 3 * 65536 + 123;
  Secret secret{};
  secret[0] = 9;
  std::vector<uint8_t> object(CiphertextSize(f4, len));
  for (size_t i = 0; i < len; ++i) object[i] = static_cast<uint8_t>(i * 7 + 1);
  const ChunkRef ref = SealChunk(secret, f4, object.data(), len);
  ASSERT_FALSE(ref.hole);
  WAVEFS_ASSERT_OK(store_.Put(ref.address, object));

  InodeAttr file;
  file.ino = index_->AllocateIno();
  file.mode = S_IFREG | 0644;
  file.nlink = 1;
  file.size = len;
  IndexBatch b;
  b.PutInode(file);
  b.PutDirEntry(kRootIno, "f", file.ino, file.mode);
  b.PutChunk(file.ino, 0, ref);
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));

  auto verify = [&] {
    FsckOptions o;
    o.verify = true;
    o.format = f4;
    auto r = CheckStore(index_.get(), spill_.get(), &store_, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : FsckReport{};
  };
  FsckReport clean = verify();
  EXPECT_TRUE(clean.problems.empty()) << clean.Text();
  EXPECT_EQ(clean.verified, 1u);

  // One byte inside segment 1: the address still matches.
  object[70000] ^= 0x10;
  ASSERT_EQ(AddressOf(f4, object), ref.address);
  WAVEFS_ASSERT_OK(store_.Remove(ref.address));
  WAVEFS_ASSERT_OK(store_.Put(ref.address, object));
  FsckReport found = verify();
  const std::string line = "chunk " + ToHex(ref.address) +
                           " is corrupt (its bytes fail authentication "
                           "under its key)";
  EXPECT_TRUE(Has(found.problems, line)) << found.Text();
  EXPECT_TRUE(Has(found.damaged_ranges, "/f: bytes [0, " + std::to_string(len) +
                                            ") corrupt (chunk " +
                                            ToHex(ref.address) + ")"))
      << found.Text();
}

}  // namespace
}  // namespace wavefs
