// A file written for long without a close: its sealed chunk refs go into
// the index every FsOptions::commit_every_chunks chunks, so what the daemon
// holds for them stays bounded whatever the file's size (invariant 5), and
// a daemon killed in the middle keeps what was committed. Every step waits
// for the seals it depends on, so no outcome is left to timing.
#include "fs_fixture.h"

namespace wavefs {
namespace {

using namespace fs_testing;

class LongWriteTest : public FsTest {
 protected:
  void SetUp() override {
    FsTest::SetUp();
    FsOptions o = TestOptions();
    o.commit_every_chunks = 2;
    Remount(o);
  }
  // Waits until the file has `pending` sealed, uncommitted chunks and none
  // being sealed.
  void WaitSealed(uint64_t ino, size_t pending) {
    ASSERT_TRUE(WaitFor(
        [&] {
          return fs_->UncommittedForTest(ino) ==
                 std::pair<size_t, size_t>{pending, 0};
        },
        10s))
        << "pending " << fs_->UncommittedForTest(ino).first << ", sealing "
        << fs_->UncommittedForTest(ino).second;
  }
  uint64_t IndexedSize(uint64_t ino) {
    auto a = index_->GetInode(ino);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? a->size : ~0ull;
  }
};

TEST_F(LongWriteTest, AnOpenFileIsCommittedEveryFewChunksAndAKillKeepsIt) {
  const std::string data = RandomBytes(9 * kC, 71);
  std::string model;  // what the file holds after the writes so far
  const uint64_t ino = Create("big");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  // Writes data[offset, offset + len) in one request.
  auto put = [&](uint64_t offset, size_t len) {
    WriteAt(h.get(), offset, data.substr(offset, len), len);
    if (model.size() < offset + len) model.resize(offset + len, '\0');
    model.replace(offset, len, data, offset, len);
  };
  // Chunks 0 and 1, one write each: each is handed to a sealer as it is
  // filled, and cannot be recorded while the write holds the file's lock,
  // so neither write sees two pending refs.
  put(0, kC);
  put(kC, kC);
  WaitSealed(ino, 2);
  EXPECT_EQ(IndexedSize(ino), 0u) << "committed before its time";

  // Chunk 2 leaves no half-filled buffer: the write that sees two pending
  // refs commits, waiting for chunk 2's seal.
  put(2 * kC, kC);
  EXPECT_EQ(IndexedSize(ino), 3 * kC);
  EXPECT_EQ(fs_->UncommittedForTest(ino), (std::pair<size_t, size_t>{0, 0}));

  // Chunks 3 and 4, then the first bytes of chunk 5: while a buffer is
  // half filled, two pending refs are not enough, nor three ...
  put(3 * kC, kC);
  put(4 * kC, kC);
  WaitSealed(ino, 2);
  put(5 * kC, 1000);
  put(6 * kC, kC);
  WaitSealed(ino, 3);
  put(5 * kC + 1000, 1000);
  put(8 * kC, kC);  // chunk 7 stays a hole
  EXPECT_EQ(IndexedSize(ino), 3 * kC);
  // ... four are: the half-filled chunk 5 is sealed with them.
  WaitSealed(ino, 4);
  put(5 * kC + 2000, 1000);
  EXPECT_EQ(IndexedSize(ino), 9 * kC);

  // The daemon dies before the close: the file is what the last commit
  // made it, byte for byte (chunk 7 and the rest of chunk 5 read as zeros).
  h.reset();
  KillAndMount();
  EXPECT_EQ(SizeOf(ino), model.size());
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

TEST_F(LongWriteTest, WritingOnAfterACommitGivesTheWholeFile) {
  // Unaligned pieces, so a buffer is half filled after most writes, then
  // a rewrite of the first chunks and a close: every commit on the way
  // must leave the same bytes as one commit at the close.
  std::string data = RandomBytes(13 * kC + 4321, 72);
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  const size_t piece = 999 * 1024 + 7;
  const size_t bound = 2 * 2 + TestOptions().max_buffers_per_file;
  for (size_t done = 0; done < data.size(); done += piece) {
    const size_t n = std::min(piece, data.size() - done);
    WriteAt(h.get(), done, data.substr(done, n), n);
    // Seals recorded since the last write's check add at most one per
    // buffer the file may hold.
    ASSERT_LE(fs_->UncommittedForTest(ino).first, bound) << "at " << done;
  }
  EXPECT_GT(IndexedSize(ino), 0u) << "13 chunks written, none committed";
  const std::string head = RandomBytes(2 * kC + 5, 73);
  WriteAt(h.get(), 100, head);
  data.replace(100, head.size(), head);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(IndexedSize(ino), data.size());
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

}  // namespace
}  // namespace wavefs
