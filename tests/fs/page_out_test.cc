// Paged-out buffers (store/page_out.h): a file written all over, with more
// chunks than it may hold in buffers, sends its least recently written
// buffer to the page-out file (encrypted under a key of the process)
// instead of sealing it as a chunk; the next write or read brings it back.
// Nothing of it reaches the spill's chunks, the index or the store before
// the close, and the close commits exactly what was written.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "fs_fixture.h"

namespace wavefs {
namespace fs_testing {
namespace {

using namespace std::chrono_literals;

class PageOutTest : public FsTest {
 protected:
  // Two buffers per file, paging on, and holds that outlast any test: a
  // buffer sealed instead of paged out shows as a held chunk.
  static FsOptions Paging(size_t slots = 64) {
    FsOptions o = TestOptions();
    o.dirty_buffers = 4;
    o.max_buffers_per_file = 2;
    o.page_out_slots = slots;
    o.hot_tail_hold = std::chrono::hours(1);
    return o;
  }
  void SetUp() override {
    FsTest::SetUp();
    Remount(Paging());
  }
};

// More files written at once than FUSE workers (fs/fuse_loop.h): every
// worker waits inside a write for a pool buffer, the buffers are held by
// files whose next writes no worker can take, so waiting brings nothing
// back. FuseSaturated (the loop's watchdog) makes the waiting write evict
// one at once instead of after the pool's timeout, here 30 s, so the
// write below finishes only through it. Every file reads back equal.
TEST_F(PageOutTest, ASaturatedLoopMakesAWaitingWriteEvictAtOnce) {
  FsOptions o = Paging();
  o.dirty_buffers = 2;
  o.buffer_evict_after = std::chrono::seconds(30);
  Remount(o);
  const uint64_t a = Create("a"), b = Create("b"), c = Create("c");
  auto ha = OpenH(a), hb = OpenH(b), hc = OpenH(c);
  const std::string da = RandomBytes(1 << 20, 71);
  const std::string db = RandomBytes(1 << 20, 72);
  const std::string dc = RandomBytes(1 << 20, 73);
  // Half-written chunks of a and b hold both buffers.
  WriteAt(ha.get(), 0, da);
  WriteAt(hb.get(), 0, db);
  EXPECT_EQ(Stat("write_buffers"), 2u);
  // Nobody waits for a buffer: nothing to do.
  EXPECT_FALSE(fs_->FuseSaturated());
  std::thread writer([&] { WriteAt(hc.get(), 0, dc); });
  // Until c's write waits in the pool (then the call reaches it).
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  bool reached = false;
  while (!(reached = fs_->FuseSaturated()) &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  writer.join();
  EXPECT_TRUE(reached);
  EXPECT_EQ(Stat("write_buffer_early_evictions"), 1u);
  EXPECT_GE(Stat("page_outs"), 1u);
  // Each file reads what was written, the paged-out one included. (Its
  // buffer comes back once a close has sealed another file's: with the
  // 30 s timeout a page-in would wait for that.)
  EXPECT_TRUE(SameBytes(db, ReadAt(hb.get(), 0, db.size() + 10)));
  EXPECT_TRUE(SameBytes(dc, ReadAt(hc.get(), 0, dc.size() + 10)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(hb)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(hc)));
  EXPECT_TRUE(SameBytes(da, ReadAt(ha.get(), 0, da.size() + 10)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(ha)));
  Remount(o);
  EXPECT_EQ(ReadFile(a), da);
  EXPECT_EQ(ReadFile(b), db);
  EXPECT_EQ(ReadFile(c), dc);
}

TEST_F(PageOutTest, BuffersOfAFileWrittenAllOverArePagedOutNotSealed) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  const std::string model = WriteAllOver(h.get(), "", 4, 100);
  // 24 writes to six chunks with two buffers: all but the first two evict
  // a buffer, and from the second round on each brings one back.
  EXPECT_GE(Stat("page_outs"), 18u);
  EXPECT_GE(Stat("page_ins"), 12u);
  EXPECT_GT(Stat("page_slots"), 0u);
  // Nothing was sealed: no chunk staged, held, dropped or uploaded.
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(index_->superseded_chunks(), 0u);
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_EQ(memory_->object_count(), 0u);
  // A read while the file is open sees every write (paged-out buffers come
  // back for it).
  EXPECT_TRUE(SameBytes(model, ReadAt(h.get(), 0, model.size() + 10)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(Stat("page_slots"), 0u);
  EXPECT_EQ(ReadFile(ino), model);
  Drain();
  // One object per chunk, each sealed once, at the close.
  EXPECT_EQ(memory_->object_count(), 6u);
  EXPECT_EQ(index_->superseded_chunks(), 0u);
  EXPECT_EQ(SpillCount(), 0u);
  Remount(Paging());
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// A chunk keeps its slot until it is sealed: a small write to a paged-out
// chunk reads back only the segment it changes in part, and the next
// page-out writes only the segments changed since.
TEST_F(PageOutTest, ASmallWriteMovesASegmentNotAChunk) {
  const uint64_t ino = Create("f");
  std::string model = RandomBytes(6 * kC, 900);
  auto h = OpenH(ino);
  WriteAt(h.get(), 0, model);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  h = OpenH(ino);
  // Two rounds bring each full chunk in (from the store) and page it out
  // whole, once (the last two chunks in the second round).
  model = WriteAllOver(h.get(), model, 2, 910);
  const uint64_t outs = Stat("page_outs"), ins = Stat("page_ins");
  const uint64_t written = Stat("page_bytes_written");
  const uint64_t read = Stat("page_bytes_read");
  EXPECT_GE(written, 4 * kC);
  model = WriteAllOver(h.get(), model, 4, 920);
  const uint64_t more_outs = Stat("page_outs") - outs;
  const uint64_t more_ins = Stat("page_ins") - ins;
  ASSERT_GE(more_outs, 18u);
  ASSERT_GE(more_ins, 18u);
  // Each 1000-byte write spans at most two segments.
  EXPECT_LE(Stat("page_bytes_written") - written, more_outs * 2 * kSegmentSize);
  EXPECT_LE(Stat("page_bytes_read") - read, more_ins * 2 * kSegmentSize);
  EXPECT_TRUE(SameBytes(model, ReadAt(h.get(), 0, model.size() + 10)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Remount(Paging());
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// A truncate, a hole punch and a zeroed range over chunks that are paged
// out (or being paged out) cut them as they cut buffers.
TEST_F(PageOutTest, TruncatesAndHolePunchesCutPagedOutChunks) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  std::string model = WriteAllOver(h.get(), "", 2, 200);
  ASSERT_GT(Stat("page_slots"), 0u);
  WAVEFS_ASSERT_OK(
      fs_->Fallocate(h.get(), kFallocPunchHole | kFallocKeepSize, 1 * kC, kC));
  model.replace(1 * kC, kC, std::string(kC, '\0'));
  WAVEFS_ASSERT_OK(
      fs_->Fallocate(h.get(), kFallocZeroRange, 2 * kC + 199000, 5000));
  model.replace(2 * kC + 199000, 5000, std::string(5000, '\0'));
  WAVEFS_ASSERT_OK(Truncate(ino, 4 * kC + 200500));
  model.resize(4 * kC + 200500);
  EXPECT_TRUE(SameBytes(model, ReadAt(h.get(), 0, model.size() + 10)));
  // More writes all over, then a truncate that grows the file again.
  model = WriteAllOver(h.get(), model, 1, 300);
  WAVEFS_ASSERT_OK(Truncate(ino, 7 * kC));
  model.resize(7 * kC, '\0');
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(Stat("page_slots"), 0u);
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
  Remount(Paging());
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// The kernel's writeback (--writeback-cache) sends a file's pages from
// several requests at once, so pieces of a sequential file arrive a little
// out of order: here 1016 KiB pieces (its size with 256 pages per request),
// each pair swapped, marked as the kernel's writeback. Each chunk is sealed as
// its last gap fills, once, while the next ones come in; none waits full in a
// buffer until an eviction pages it out (2026-12-07: 258-324 of 514 chunks of a
// 2 GiB `tee`, 1.1 GB through the page-out file).
TEST_F(PageOutTest, PiecesALittleOutOfOrderSealEachChunkOnceWithoutPagingOut) {
  const uint64_t ino = Create("f");
  const std::string data = RandomBytes(8 * kC, 950);
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  constexpr size_t kPiece = 1016 << 10;
  std::vector<uint64_t> starts;
  for (uint64_t at = 0; at < data.size(); at += kPiece) starts.push_back(at);
  for (size_t i = 0; i + 1 < starts.size(); i += 2)
    std::swap(starts[i], starts[i + 1]);
  for (uint64_t at : starts)
    WriteAt(h.get(), at, data.substr(at, kPiece), kPiece, /*writeback=*/true);
  EXPECT_EQ(Stat("page_outs"), 0u);
  EXPECT_EQ(Stat("page_slots"), 0u);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Drain();
  EXPECT_EQ(memory_->object_count(), 8u);
  EXPECT_EQ(index_->superseded_chunks(), 0u);
  Remount(Paging());
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// More gaps than a buffer tracks: the chunk is no longer sealed early, but
// it is sealed whole at the close and reads back equal.
TEST_F(PageOutTest, PiecesInAnyOrderStillCommitEveryByte) {
  const uint64_t ino = Create("f");
  const std::string data = RandomBytes(kC, 951);
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  // Every other 4 KiB page first (512 gaps), then the rest backwards.
  constexpr size_t kPage = 4096;
  for (uint64_t at = kPage; at < data.size(); at += 2 * kPage)
    WriteAt(h.get(), at, data.substr(at, kPage));
  for (uint64_t at = data.size() - 2 * kPage;; at -= 2 * kPage) {
    WriteAt(h.get(), at, data.substr(at, kPage));
    if (at == 0) break;
  }
  EXPECT_TRUE(SameBytes(data, ReadAt(h.get(), 0, kC)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Drain();
  EXPECT_EQ(memory_->object_count(), 1u);
  Remount(Paging());
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// With every slot taken, an evicted buffer is sealed as a chunk (held and
// dropped when replaced, as without paging).
TEST_F(PageOutTest, WithEverySlotTakenBuffersAreSealedAsBefore) {
  Remount(Paging(1));
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  const std::string model = WriteAllOver(h.get(), "", 4, 400);
  EXPECT_GT(Stat("page_outs"), 0u);
  EXPECT_GT(index_->superseded_chunks(), 0u);
  EXPECT_LE(Stat("page_slots"), 1u);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(ReadFile(ino), model);
  Drain();
  EXPECT_EQ(memory_->object_count(), 6u);
  Remount(Paging(1));
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// A page-out that fails (the spill full, an I/O error) leaves the buffer
// as it was, and it is sealed instead.
TEST_F(PageOutTest, AFailedPageOutSealsTheBufferInstead) {
  FsOptions o = Paging();
  o.hooks.page_out_fault = [](uint64_t, uint64_t) {
    return Status::Error(Code::kNoSpace, "injected: no space", ENOSPC);
  };
  Remount(o);
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  const std::string model = WriteAllOver(h.get(), "", 3, 500);
  EXPECT_EQ(Stat("page_outs"), 0u);
  // Each failed page-out gives its slot back on the seal thread, the last
  // one possibly after the last write returned.
  EXPECT_TRUE(WaitFor([&] { return Stat("page_slots") == 0; }, 30s))
      << Stat("page_slots") << " slots still taken";
  EXPECT_GT(index_->superseded_chunks(), 0u);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(ReadFile(ino), model);
  Remount(Paging());
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// A close that starts while a buffer is being paged out waits for it and
// commits what it holds: the page-out is held up until the close is
// waiting for it. Without that wait (or without bringing paged-out
// buffers back before sealing) the commit misses chunk 0's write.
TEST_F(PageOutTest, ACloseDuringAPageOutCommitsItsData) {
  const uint64_t ino = Create("f");
  std::mutex mu;
  std::condition_variable cv;
  bool armed = false, in_flight = false, close_waits = false, timed_out = false;
  FsOptions o = Paging();
  o.hooks.page_out_written = [&](uint64_t i, uint64_t index) {
    if (i != ino || index != 0) return;
    std::unique_lock<std::mutex> lock(mu);
    if (!armed) return;
    armed = false;
    in_flight = true;
    cv.notify_all();
    timed_out = !cv.wait_for(lock, 20s, [&] { return close_waits; });
  };
  o.hooks.seal_all_page_wait = [&](uint64_t i) {
    if (i != ino) return;
    std::lock_guard<std::mutex> lock(mu);
    if (!in_flight) return;
    close_waits = true;
    cv.notify_all();
  };
  Remount(o);
  auto h = OpenH(ino);
  const std::string data = RandomBytes(3 * kC, 700);
  WriteAt(h.get(), 0, data.substr(0, 300000));
  WriteAt(h.get(), kC, data.substr(kC, 300000));
  {
    std::lock_guard<std::mutex> lock(mu);
    armed = true;
  }
  // Chunk 2 evicts chunk 0: its page-out stops in the hook.
  WriteAt(h.get(), 2 * kC, data.substr(2 * kC, 300000));
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 20s, [&] { return in_flight; }))
        << "chunk 0 was not paged out";
  }
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(close_waits);
    EXPECT_FALSE(timed_out) << "the close did not wait for the page-out";
  }
  std::string model(2 * kC + 300000, '\0');
  for (uint64_t c = 0; c < 3; ++c)
    model.replace(c * kC, 300000, data.substr(c * kC, 300000));
  // Killed right after the close: only what it committed is there.
  KillAndMount(Paging());
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// A daemon killed while a closed file is rewritten all over: the file is as
// its close left it, and nothing of the paged-out buffers is left behind
// (the page-out file has no name).
TEST_F(PageOutTest, AKillLosesOnlyWhatNoCloseCommitted) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  const std::string closed = WriteAllOver(h.get(), "", 1, 600);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  h = OpenH(ino);
  WriteAllOver(h.get(), closed, 3, 800);
  EXPECT_GT(Stat("page_slots"), 0u);
  h.reset();  // the kill: no release, no commit
  KillAndMount(Paging());
  EXPECT_TRUE(SameBytes(closed, ReadFile(ino)));
  Drain();
  EXPECT_EQ(SpillCount(), 0u);
  size_t entries = 0;
  for (auto& e : std::filesystem::directory_iterator(*tmp_ / "spill"))
    entries += e.path().filename().string().rfind(".page-out", 0) == 0;
  EXPECT_EQ(entries, 0u);
}

// Random writes, reads, truncates, hole punches, zeroed ranges and flushes
// on a file of up to six chunks with two buffers (so chunks are paged out
// and back all the time), every read compared with a string model, and
// the file compared again after a remount.
TEST_F(PageOutTest, RandomOpsMatchAStringModel) {
  for (size_t slots : {size_t{64}, size_t{2}}) {
    SCOPED_TRACE("slots " + std::to_string(slots));
    Remount(Paging(slots));
    std::mt19937_64 rng(77 + slots);
    auto uniform = [&](uint64_t lo, uint64_t hi) {  // inclusive
      return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
    };
    const uint64_t max_end = 6 * kC;
    std::string model;
    const uint64_t ino = Create("model" + std::to_string(slots));
    auto h = OpenH(ino);
    ASSERT_TRUE(h);
    for (int op = 0; op < 400; ++op) {
      SCOPED_TRACE("op " + std::to_string(op));
      const uint64_t kind = uniform(0, 99);
      if (kind < 50) {
        uint64_t len = uniform(0, 9) < 8 ? uniform(1, 200000) : uniform(1, kC);
        uint64_t off = uniform(0, 3) == 0
                           ? uniform(1, 5) * kC - uniform(0, 70000)
                           : uniform(0, max_end - 1);
        len = std::min(len, max_end - off);
        const std::string data = RandomBytes(len, rng());
        WriteAt(h.get(), off, data, 128 * 1024);
        if (model.size() < off + len) model.resize(off + len, '\0');
        model.replace(off, len, data);
      } else if (kind < 56) {
        const uint64_t size = uniform(0, max_end);
        WAVEFS_ASSERT_OK(Truncate(ino, size));
        model.resize(size, '\0');
      } else if (kind < 62 && !model.empty()) {
        const uint64_t off = uniform(0, model.size() - 1);
        const uint64_t len = uniform(1, kC + 100000);
        const bool punch = uniform(0, 1) == 0;
        WAVEFS_ASSERT_OK(
            fs_->Fallocate(h.get(),
                           punch ? kFallocPunchHole | kFallocKeepSize
                                 : kFallocZeroRange | kFallocKeepSize,
                           off, len));
        const uint64_t n = std::min<uint64_t>(len, model.size() - off);
        model.replace(off, n, std::string(n, '\0'));
      } else if (kind < 92) {
        const uint64_t off = uniform(0, model.size() + 1000);
        const uint64_t len = uniform(1, kC + 1000);
        const std::string want =
            off < model.size() ? model.substr(off, len) : std::string();
        ASSERT_TRUE(SameBytes(want, ReadAt(h.get(), off, len)))
            << "read " << len << " at " << off;
      } else if (kind < 97) {
        WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
      } else {
        WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
        h = OpenH(ino);
        ASSERT_TRUE(h);
      }
      ASSERT_EQ(SizeOf(ino), model.size());
    }
    EXPECT_GT(Stat("page_outs"), 50u);
    EXPECT_TRUE(SameBytes(model, ReadAt(h.get(), 0, model.size() + 1)));
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
    EXPECT_EQ(Stat("page_slots"), 0u);
    Remount(Paging(slots));
    EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
  }
}

}  // namespace
}  // namespace fs_testing
}  // namespace wavefs
