// One budget of chunk buffers for reads and writes (store/chunk_slots.h):
// the buffers a reader keeps idle (cached chunks, the reuse list) are
// unmapped when writers need buffers, and the write buffers kept free are
// unmapped when a reader needs one, so the two sides' idle buffers never
// add up past the budget. Before 2026-12-07 a read followed by eight
// writers held both: 56 MiB peak RSS instead of 45 (tests/integration/
// test_memory.sh measures that; these tests count buffers).
#include "store/chunk_slots.h"

#include <gtest/gtest.h>

#include "fs_fixture.h"

namespace wavefs {
namespace fs_testing {
namespace {

TEST(ChunkSlotsTest, PastTheTotalTheOtherHoldersShedFirst) {
  ChunkSlots slots(3);
  int idle_a = 0, idle_b = 0;  // buffers each holder keeps idle
  int shed_a = 0, shed_b = 0;
  const int a = slots.AddHolder([&] {
    ++shed_a;
    slots.Give(idle_a);
    idle_a = 0;
  });
  const int b = slots.AddHolder([&] {
    ++shed_b;
    slots.Give(idle_b);
    idle_b = 0;
  });
  EXPECT_TRUE(slots.Take(a));
  EXPECT_TRUE(slots.Take(a));
  idle_a = 2;  // a stops using both and keeps them
  EXPECT_TRUE(slots.Take(b));
  EXPECT_EQ(shed_a + shed_b, 0);  // within the total: nobody sheds
  EXPECT_FALSE(slots.Over());
  // b's second buffer is past the total: a sheds, b does not.
  EXPECT_TRUE(slots.Take(b));
  EXPECT_EQ(shed_a, 1);
  EXPECT_EQ(shed_b, 0);
  EXPECT_EQ(slots.used(), 2u);
  EXPECT_EQ(slots.peak(), 3u);  // after the shed, not the moment before
  EXPECT_TRUE(slots.Take(b));
  // Nothing idle anywhere: the fourth buffer is an overdraft, taken anyway.
  EXPECT_FALSE(slots.Take(b));
  EXPECT_EQ(slots.used(), 4u);
  EXPECT_TRUE(slots.Over());
  slots.Give();
  EXPECT_FALSE(slots.Over());
  EXPECT_EQ(slots.peak(), 4u);
  EXPECT_EQ(slots.sheds(), 2u);
}

class ChunkSlotsFsTest : public FsTest {
 protected:
  // Four slots shared by four write buffers and the reader's buffers; no
  // prefetch thread, so every buffer is taken by the test's own calls.
  static FsOptions Shared() {
    FsOptions o = TestOptions();
    o.dirty_buffers = 4;
    o.max_buffers_per_file = 2;
    o.cache_chunks = 2;
    o.recycled_chunks = 2;
    o.prefetch = false;
    o.hot_tail_hold = std::chrono::milliseconds(0);
    return o;
  }
  void SetUp() override {
    FsTest::SetUp();
    Remount(Shared());
  }
};

TEST_F(ChunkSlotsFsTest, ReadersAndWritersShareOneBudgetOfChunkBuffers) {
  const std::string big = RandomBytes(3 * kC + 1000, 71);
  const uint64_t big_ino = WriteFile("big", big);
  Remount(Shared());
  EXPECT_EQ(Stat("chunk_slots"), 4u);

  // A sequential read of three chunks leaves the reader holding buffers:
  // two cached chunks and the reuse list.
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  const uint64_t reader_idle = Stat("chunk_slots_used");
  EXPECT_GE(reader_idle, 2u);
  EXPECT_EQ(Stat("write_buffers"), 0u);

  // Four writers, each holding a dirty buffer: the pool maps four, and the
  // reader's idle buffers go first. Without the shared budget the two
  // sides held reader_idle + 4 buffers at once.
  std::vector<std::string> data;
  std::vector<uint64_t> inos;
  std::vector<std::unique_ptr<FileHandle>> handles;
  for (int i = 0; i < 4; ++i) {
    data.push_back(RandomBytes(kC / 2 + 17 * i, 100 + i));
    inos.push_back(Create("w" + std::to_string(i)));
    handles.push_back(OpenH(inos.back()));
    WriteAt(handles.back().get(), 0, data.back());
  }
  EXPECT_EQ(Stat("write_buffers"), 4u);
  EXPECT_EQ(Stat("chunk_slots_used"), 4u);
  EXPECT_LE(Stat("chunk_slots_peak"), 4u);
  EXPECT_GE(Stat("chunk_slot_sheds"), 1u);
  for (auto& h : handles) WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  // Committed: the pool keeps its four buffers free for the next writer.
  EXPECT_EQ(Stat("write_buffers"), 4u);

  // A reader needing buffers again unmaps free write buffers for them.
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  EXPECT_LT(Stat("write_buffers"), 4u);
  EXPECT_LE(Stat("chunk_slots_used"), 4u);
  EXPECT_LE(Stat("chunk_slots_peak"), 4u);

  // Every byte survives, through a remount too.
  for (size_t i = 0; i < inos.size(); ++i)
    EXPECT_TRUE(SameBytes(data[i], ReadFile(inos[i]))) << "w" << i;
  Remount(Shared());
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  for (size_t i = 0; i < inos.size(); ++i)
    EXPECT_TRUE(SameBytes(data[i], ReadFile(inos[i]))) << "w" << i;
}

}  // namespace
}  // namespace fs_testing
}  // namespace wavefs
