// One budget of chunk buffers for reads and writes (store/chunk_slots.h):
// the buffers a reader keeps idle (cached chunks, the reuse list) are
// unmapped when writers need buffers, and the write buffers kept free are
// unmapped when a reader needs one, so the two sides' idle buffers never
// add up past the budget. Before 2026-12-07 a read followed by eight
// writers held both: 56 MiB peak RSS instead of 45 (tests/integration/
// test_memory.sh measures that; these tests count buffers).
#include "store/chunk_slots.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <thread>

#include "fs_fixture.h"

namespace wavefs {
namespace fs_testing {
namespace {

using namespace std::chrono_literals;

// A buffer given back is wiped where it was written, and its pages never
// written stay unmapped until the unmap: wiping every byte faulted them in
// first (2 MiB of a small file's write buffer at each shed).
TEST(ChunkSlotsTest, AWipeZeroesWrittenPagesAndFaultsNoOtherIn) {
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t bytes = 4u << 20;
  void* map = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(map, MAP_FAILED);
  (void)::madvise(map, bytes, MADV_NOHUGEPAGE);  // small pages, counted
  auto* b = static_cast<uint8_t*>(map);
  auto resident = [&] {
    std::vector<unsigned char> v(bytes / page);
    EXPECT_EQ(::mincore(map, bytes, v.data()), 0);
    size_t n = 0;
    for (unsigned char c : v) n += c & 1;
    return n;
  };
  // Written: the first 10 pages and a run in the middle; from an unaligned
  // start and to an unaligned end, as a vector's data may be.
  std::memset(b + 100, 0xa5, 10 * page - 100);
  std::memset(b + 512 * page, 0x5a, 3 * page);
  ASSERT_EQ(resident(), 13u);
  WipeChunkBuffer(b + 100, bytes - 200);
  EXPECT_EQ(resident(), 13u) << "the wipe faulted pages in";
  for (size_t i = 100; i < 10 * page; ++i) ASSERT_EQ(b[i], 0) << "at " << i;
  for (size_t i = 512 * page; i < 515 * page; ++i)
    ASSERT_EQ(b[i], 0) << "at " << i;
  // A buffer of less than a page is wiped whole.
  std::memset(b + 600 * page + 10, 0x33, 100);
  WipeChunkBuffer(b + 600 * page + 10, 100);
  for (size_t i = 600 * page + 10; i < 600 * page + 110; ++i)
    ASSERT_EQ(b[i], 0) << "at " << i;
  ::munmap(map, bytes);
}

TEST(ChunkSlotsTest, PastTheTotalTheOtherHoldersShedFirst) {
  ChunkSlots slots(3, 0ms, 0ms);
  int idle_a = 0, idle_b = 0;  // buffers each holder keeps idle
  int shed_a = 0, shed_b = 0;
  const int a = slots.AddHolder([&](const ChunkSlots::Cutoffs&) {
    ++shed_a;
    slots.Give(idle_a);
    idle_a = 0;
  });
  const int b = slots.AddHolder([&](const ChunkSlots::Cutoffs&) {
    ++shed_b;
    slots.Give(idle_b);
    idle_b = 0;
  });
  EXPECT_TRUE(slots.Take(a));
  EXPECT_TRUE(slots.Take(a));
  idle_a = 2;  // a stops using both and keeps them
  EXPECT_TRUE(slots.Take(b));
  EXPECT_EQ(shed_a + shed_b, 0);  // within the total: nobody sheds
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
  slots.Give();
  EXPECT_EQ(slots.peak(), 4u);
  EXPECT_EQ(slots.sheds(), 1u);  // the second found nothing to unmap
}

TEST(ChunkSlotsTest, ShedsOnlyWhatHasBeenIdleLongEnough) {
  ChunkSlots slots(1, 1h, 1min);
  std::vector<ChunkSlots::Cutoffs> cutoffs;
  slots.AddHolder([&](const ChunkSlots::Cutoffs& c) { cutoffs.push_back(c); });
  const int b = slots.AddHolder([](const ChunkSlots::Cutoffs&) {});
  const auto before = ChunkSlots::Clock::now();
  EXPECT_TRUE(slots.Take(b));
  EXPECT_FALSE(slots.Take(b));
  ASSERT_EQ(cutoffs.size(), 1u);
  // The holder is asked for the cached chunks it has kept idle for an hour
  // or more, and for the buffers it keeps for reuse idle for a minute.
  EXPECT_LE(cutoffs[0].cached, before - 1h + 1s);
  EXPECT_GE(cutoffs[0].cached, before - 1h);
  EXPECT_LE(cutoffs[0].reuse, before - 1min + 1s);
  EXPECT_GE(cutoffs[0].reuse, before - 1min);
  // An idle mount's release asks for both kinds with the same cutoff.
  const auto at = before - 5s;
  slots.ShedIdle(at);
  ASSERT_EQ(cutoffs.size(), 2u);
  EXPECT_EQ(cutoffs[1].cached, at);
  EXPECT_EQ(cutoffs[1].reuse, at);
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
    o.chunk_idle = 0ms;  // every idle buffer counts as idle long enough
    o.reuse_idle = 0ms;
    return o;
  }
  void SetUp() override {
    FsTest::SetUp();
    Remount(Shared());
  }
  // Four files, each holding a dirty buffer: half a chunk written, open.
  struct Writers {
    std::vector<std::string> data;
    std::vector<uint64_t> inos;
    std::vector<std::unique_ptr<FileHandle>> handles;
  };
  // Writes `big` as "big", remounts with `o` and reads it back: the reader
  // then keeps buffers (two cached chunks and its reuse list). Returns the
  // slots they take.
  uint64_t ReadBigAfterRemount(const FsOptions& o, const std::string& big,
                               uint64_t* ino) {
    *ino = WriteFile("big", big);
    Remount(o);
    EXPECT_TRUE(SameBytes(big, ReadFile(*ino)));
    const uint64_t held = Stat("chunk_slots_used");
    EXPECT_GE(held, 2u);
    return held;
  }
  Writers StartWriters(uint64_t seed) {
    Writers w;
    for (int i = 0; i < 4; ++i) {
      w.data.push_back(RandomBytes(kC / 2 + 7 * i, seed + i));
      w.inos.push_back(Create("w" + std::to_string(i)));
      w.handles.push_back(OpenH(w.inos.back()));
      WriteAt(w.handles.back().get(), 0, w.data.back());
    }
    return w;
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
  Writers w = StartWriters(100);
  auto& [data, inos, handles] = w;
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

// A reader and writers at work at the same time keep their buffers: only
// buffers idle for chunk_idle are unmapped, so neither side makes the other
// fetch or map again what it is about to use. Past the count, the buffers
// are an overdraft instead.
TEST_F(ChunkSlotsFsTest, BuffersInRecentUseAreNotTakenAway) {
  FsOptions o = Shared();
  o.chunk_idle = std::chrono::hours(1);
  o.reuse_idle = std::chrono::hours(1);
  const std::string big = RandomBytes(3 * kC + 1000, 72);
  uint64_t big_ino = 0;
  const uint64_t reader_held = ReadBigAfterRemount(o, big, &big_ino);
  Writers w = StartWriters(200);
  auto& [data, inos, handles] = w;
  EXPECT_EQ(Stat("write_buffers"), 4u);
  // The reader's buffers stayed: the writers' are past the count.
  EXPECT_EQ(Stat("chunk_slots_used"), reader_held + 4);
  EXPECT_EQ(Stat("chunk_slot_sheds"), 0u);
  for (auto& h : handles) WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  EXPECT_EQ(Stat("write_buffers"), 4u);  // kept free for the next writer
  for (size_t i = 0; i < inos.size(); ++i)
    EXPECT_TRUE(SameBytes(data[i], ReadFile(inos[i]))) << "w" << i;
}

// Buffers a side keeps only to reuse them go sooner than cached chunks
// (reuse_idle, not chunk_idle): writers starting right after a read take
// the slots of the reader's reuse list, while the chunks it cached stay
// for a reader coming back; a reader right after writers takes the pool's
// free buffers. Before 2026-12-07 both waited for chunk_idle, and eight
// writers right after SQLite's reads peaked 8-10 MiB higher.
TEST_F(ChunkSlotsFsTest, BuffersKeptForReuseGoBeforeCachedChunks) {
  FsOptions o = Shared();
  o.chunk_idle = std::chrono::hours(1);
  o.reuse_idle = 0ms;
  const std::string big = RandomBytes(3 * kC + 1000, 77);
  uint64_t big_ino = 0;
  const uint64_t reader_held = ReadBigAfterRemount(o, big, &big_ino);
  const uint64_t reuse = Stat("read_reuse_buffers");
  ASSERT_GE(reuse, 1u) << "the read left nothing on the reuse list";
  ASSERT_LT(reuse, reader_held) << "the read left no cached chunk";
  Writers w = StartWriters(250);
  auto& [data, inos, handles] = w;
  EXPECT_EQ(Stat("write_buffers"), 4u);
  EXPECT_EQ(Stat("read_reuse_buffers"), 0u);
  // The cached chunks stayed (past the count: an overdraft).
  EXPECT_EQ(Stat("chunk_slots_used"), reader_held - reuse + 4);
  EXPECT_GE(Stat("chunk_slot_sheds"), 1u);
  for (auto& h : handles) WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(Stat("write_buffers"), 4u);  // free, kept for reuse
  // The reader again: what it fetches takes free write buffers' slots.
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  EXPECT_LT(Stat("write_buffers"), 4u);
  for (size_t i = 0; i < inos.size(); ++i)
    EXPECT_TRUE(SameBytes(data[i], ReadFile(inos[i]))) << "w" << i;
  Remount(o);
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  for (size_t i = 0; i < inos.size(); ++i)
    EXPECT_TRUE(SameBytes(data[i], ReadFile(inos[i]))) << "w" << i;
}

// Buffers that were in use when the pool grew past the count are unmapped
// later, once idle long enough: the next buffer a writer reuses from the
// pool asks for them (ChunkSlots::Rebalance). Whether the reader's buffers
// were young or already idle when the writers came depends on this
// machine's speed; the end state does not.
TEST_F(ChunkSlotsFsTest, IdleBuffersGoOnceIdleLongEnoughAfterThePoolGrew) {
  FsOptions o = Shared();
  o.chunk_idle = 100ms;
  o.reuse_idle = 100ms;
  const std::string big = RandomBytes(3 * kC + 1000, 73);
  const uint64_t big_ino = WriteFile("big", big);
  Remount(o);
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  EXPECT_GE(Stat("chunk_slots_used"), 2u);
  Writers w = StartWriters(300);
  auto& [data, inos, handles] = w;
  EXPECT_EQ(Stat("write_buffers"), 4u);
  for (auto& h : handles) WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  // Longer than chunk_idle: the reader's buffers are idle long enough now,
  // however late they were last used.
  std::this_thread::sleep_for(300ms);
  data.push_back(RandomBytes(kC / 3, 310));
  inos.push_back(Create("w4"));
  auto h = OpenH(inos.back());
  WriteAt(h.get(), 0, data.back());
  EXPECT_EQ(Stat("write_buffers"), 4u);
  EXPECT_LE(Stat("chunk_slots_used"), 4u);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  for (size_t i = 0; i < inos.size(); ++i)
    EXPECT_TRUE(SameBytes(data[i], ReadFile(inos[i]))) << "w" << i;
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
}

// An idle mount gives back the buffers both sides kept (fs/idle_release.h):
// the reader's cached chunks and reuse list, and the pool's free buffers,
// once nobody used them for idle_release. A buffer an open file still
// holds dirty stays, and its file completes as if nothing happened.
TEST_F(ChunkSlotsFsTest, AnIdleMountGivesItsBuffersBack) {
  FsOptions o = Shared();
  o.chunk_idle = std::chrono::hours(1);  // no shedding between the sides
  o.reuse_idle = std::chrono::hours(1);
  o.idle_release = 200ms;
  const std::string big = RandomBytes(3 * kC + 1000, 75);
  uint64_t big_ino = 0;
  const uint64_t reader_held = ReadBigAfterRemount(o, big, &big_ino);
  Writers w = StartWriters(400);
  auto& [data, inos, handles] = w;
  // Three of the four commit; the fourth keeps its dirty buffer.
  for (int i = 0; i < 3; ++i)
    WAVEFS_ASSERT_OK(fs_->Release(std::move(handles[i])));
  EXPECT_EQ(Stat("write_buffers"), 4u);
  EXPECT_EQ(Stat("chunk_slots_used"), reader_held + 4);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (Stat("chunk_slots_used") > 1 &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);
  EXPECT_EQ(Stat("chunk_slots_used"), 1u)
      << "idle buffers still mapped 20 s later";
  EXPECT_EQ(Stat("write_buffers"), 1u);
  EXPECT_GE(Stat("idle_buffers_released"), reader_held + 3);
  // The open file goes on where it was, and everything reads back equal.
  const std::string more = RandomBytes(kC, 410);
  WriteAt(handles[3].get(), data[3].size(), more);
  data[3] += more;
  WAVEFS_ASSERT_OK(fs_->Release(std::move(handles[3])));
  for (size_t i = 0; i < inos.size(); ++i)
    EXPECT_TRUE(SameBytes(data[i], ReadFile(inos[i]))) << "w" << i;
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  Remount(o);
  for (size_t i = 0; i < inos.size(); ++i)
    EXPECT_TRUE(SameBytes(data[i], ReadFile(inos[i]))) << "w" << i;
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
}

// idle_release 0: what the two sides keep stays mapped.
TEST_F(ChunkSlotsFsTest, WithoutIdleReleaseBuffersStay) {
  FsOptions o = Shared();
  o.chunk_idle = std::chrono::hours(1);
  o.reuse_idle = std::chrono::hours(1);
  o.idle_release = 0ms;
  uint64_t big_ino = 0;
  const uint64_t held =
      ReadBigAfterRemount(o, RandomBytes(2 * kC, 76), &big_ino);
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(Stat("chunk_slots_used"), held);
  EXPECT_EQ(Stat("idle_buffers_released"), 0u);
}

// Files that already exist, changed while the two sides take buffers from
// each other: an overwrite inside a committed chunk brings the old bytes
// in through a reader buffer (copy-on-write) while writers hold the pool,
// an append extends a tail, a truncate cuts one down. Every file then
// equals a model of the same changes, open and after a remount.
TEST_F(ChunkSlotsFsTest, ExistingFilesChangedWhileBuffersMoveEqualTheirModels) {
  const std::string big = RandomBytes(3 * kC + 1000, 74);
  const uint64_t big_ino = WriteFile("big", big);
  std::vector<std::string> model;
  std::vector<uint64_t> inos;
  for (int i = 0; i < 4; ++i) {
    model.push_back(RandomBytes(kC + kC / 2 + 11 * i, 400 + i));
    inos.push_back(WriteFile("e" + std::to_string(i), model.back()));
  }
  Remount(Shared());
  // The reader holds idle buffers; the writers below need the pool.
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  std::vector<std::unique_ptr<FileHandle>> handles;
  for (int i = 0; i < 4; ++i) {
    handles.push_back(OpenH(inos[i]));
    const std::string patch = RandomBytes(100000, 500 + i);
    const uint64_t at = 1000000 + 4096 * i;  // inside chunk 0
    WriteAt(handles.back().get(), at, patch);
    model[i].replace(at, patch.size(), patch);
  }
  // An append onto file 0's tail (chunk 1) and a cut of file 1.
  const std::string tail = RandomBytes(30000, 510);
  WriteAt(handles[0].get(), model[0].size(), tail);
  model[0] += tail;
  AttrChange cut;
  cut.size = kC / 3;
  ASSERT_TRUE(fs_->SetAttr(inos[1], cut).ok());
  model[1].resize(kC / 3);
  EXPECT_GE(Stat("chunk_slot_sheds"), 1u);  // the buffers did move
  for (size_t i = 0; i < inos.size(); ++i)
    EXPECT_TRUE(SameBytes(model[i], ReadFile(inos[i]))) << "e" << i;
  for (auto& h : handles) WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Remount(Shared());
  for (size_t i = 0; i < inos.size(); ++i)
    EXPECT_TRUE(SameBytes(model[i], ReadFile(inos[i]))) << "e" << i;
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
}

}  // namespace
}  // namespace fs_testing
}  // namespace wavefs
