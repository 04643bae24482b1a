// Invariant 6 (a full spill): writers wait while uploads free space, and
// get ENOSPC only after --space-wait without progress. The spill's free
// space is a simulated disk of a few chunks (FsHooks::spill_free_bytes) that
// also fails a stage which would not fit, as a real full disk does; the
// interleavings are forced through FsHooks and a store whose puts are slow
// or refused, and every test checks that the case it meant really happened.
#include <filesystem>
#include <future>
#include <map>
#include <set>

#include "fs/filesystem.h"
#include "fs_fixture.h"

namespace wavefs {
namespace {

using namespace fs_testing;  // NOLINT
using namespace std::chrono_literals;

constexpr uint64_t kBlock = 4096;
constexpr uint64_t RoundUp(uint64_t n) {
  return (n + kBlock - 1) / kBlock * kBlock;
}
// What one full chunk takes in the spill.
constexpr uint64_t kChunkOnDisk = RoundUp(kMaxCiphertextSize);

// A disk of `budget` bytes holding the spill directory. Used bytes are the
// chunk files in the directory plus the chunks being staged (counted whole
// from the start of their stage, so a half-written temporary file counts
// in full). A stage that would not fit fails with ENOSPC and is counted as
// an overflow: with a correct reservation there is never one.
class SimulatedDisk {
 public:
  SimulatedDisk(std::string dir, uint64_t budget)
      : dir_(std::move(dir)), budget_(budget) {}

  Result<uint64_t> Free() {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t used = UsedLocked();
    return used >= budget_ ? 0 : budget_ - used;
  }
  Status Begin(const Address& address, uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t used = UsedLocked() + bytes;
    if (used > budget_) {
      overflows_ += 1;
      return Status::Error(Code::kNoSpace, "simulated disk full", ENOSPC);
    }
    peak_ = std::max(peak_, used);
    staging_.insert(ToHex(address));
    staging_bytes_ += bytes;
    stages_ += 1;
    return Status::Ok();
  }
  void End(const Address& address, uint64_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    staging_.erase(staging_.find(ToHex(address)));
    staging_bytes_ -= bytes;
  }
  uint64_t budget() const { return budget_; }
  uint64_t peak() {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }
  int overflows() {
    std::lock_guard<std::mutex> lock(mu_);
    return overflows_;
  }
  int stages() {
    std::lock_guard<std::mutex> lock(mu_);
    return stages_;
  }

 private:
  uint64_t UsedLocked() {
    uint64_t used = staging_bytes_;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
      const std::string name = e.path().filename().string();
      if (!IsAddressName(name) || staging_.count(name)) continue;
      std::error_code size_ec;
      const uint64_t size = e.file_size(size_ec);
      if (!size_ec) used += RoundUp(size);  // else removed meanwhile
    }
    return used;
  }

  const std::string dir_;
  const uint64_t budget_;
  std::mutex mu_;
  std::multiset<std::string> staging_;  // hex addresses being staged
  uint64_t staging_bytes_ = 0;
  uint64_t peak_ = 0;
  int overflows_ = 0;
  int stages_ = 0;
};

// While `full`, puts fail as a full store does
// (retryable: the uploader keeps trying, and frees nothing meanwhile).
class GatedStore : public MemoryStore {
 public:
  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override {
    if (full.load())
      return Status::Error(Code::kNoSpace, "store full (test)", ENOSPC,
                           /*retryable=*/true);
    return MemoryStore::Put(address, ciphertext);
  }
  std::atomic<bool> full{false};
};

class FsSpaceTest : public FsTest {
 protected:
  std::unique_ptr<MemoryStore> MakeMemoryStore() override {
    auto s = std::make_unique<GatedStore>();
    gated_ = s.get();
    return s;
  }
  // Remounts on a simulated disk of `budget` bytes, with `hooks` (whose
  // space hooks are filled in here).
  void MountOnDisk(uint64_t budget, FsOptions o, FsHooks hooks) {
    Unmount();
    disk_ = std::make_unique<SimulatedDisk>(*tmp_ / "spill", budget);
    hooks.spill_free_bytes = [this] { return disk_->Free(); };
    hooks.stage_begin = [this](const Address& a, uint64_t n) {
      if (on_stage_) on_stage_();
      return disk_->Begin(a, n);
    };
    hooks.stage_end = [this](const Address& a, uint64_t n) {
      disk_->End(a, n);
    };
    o.spill_reserve_bytes = 0;
    o.hooks = std::move(hooks);
    Mount(o);
  }
  void TearDown() override {
    gated_->full = false;
    FsTest::TearDown();
  }

  GatedStore* gated_ = nullptr;
  std::unique_ptr<SimulatedDisk> disk_;
  // Called in a seal thread when its stage begins (after its wait).
  std::function<void()> on_stage_;
};

// Chunks held in the spill (store/index.h, "Held chunks": here versions of
// a file written all over, evicted before its close, with a hold of an
// hour) must not keep writers from the space they take: a spill with room
// for three chunks, a file of six whose every chunk is evicted and brought
// back four times, and --space-wait of 30 s. Writers short of space end the
// holds, the uploads free the space, and every write succeeds.
TEST_F(FsSpaceTest, HeldChunksGiveWayWhenTheSpillIsShort) {
  FsOptions o = TestOptions();
  o.dirty_buffers = 4;
  o.max_buffers_per_file = 2;
  // Long enough for uploads on a stalled machine to free the space (it
  // was 2 s); held chunks that did not give way fail a write after it.
  o.space_wait = 30s;
  o.hot_tail_hold = std::chrono::hours(1);
  MountOnDisk(3 * kChunkOnDisk, o, FsHooks{});
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  std::string model;
  for (int r = 0; r < 4; ++r) {
    for (uint64_t c = 0; c < 6; ++c) {
      const uint64_t at = c * kC + kC - 2000 + r * 100;
      const std::string piece = RandomBytes(1000, 1000 + r * 6 + c);
      WriteAt(h.get(), at, piece);
      if (model.size() < at + piece.size())
        model.resize(at + piece.size(), '\0');
      model.replace(at, piece.size(), piece);
    }
  }
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(disk_->overflows(), 0);
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
  Drain();
  Remount();
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// Regression (issue 9: it_full_disk got ENOSPC while uploads were freeing
// space). Eight writers on a spill with room for two chunks. The first
// round of the eight seal threads all look at the free space before any of
// them may begin its stage (a gate in stage_begin), so a check that did not
// reserve would let all eight through onto a disk with room for two. Only
// two may stage; the others wait, some of them longer than --space-wait
// while uploads keep freeing space, and none gets ENOSPC. The wait is
// measured on a test clock that moves 600 ms (less than --space-wait) each
// time an upload frees space, just after the waiters were told: a wait that
// restarts on progress never times out, however slow the machine is, and a
// seal thread that waits through two frees has waited longer than
// --space-wait (the case where a wait that does not restart fails).
TEST_F(FsSpaceTest, EightWritersOnATinySpillAllSucceed) {
  constexpr int kWriters = 8;
  std::mutex mu;
  std::condition_variable cv;
  int checked = 0;  // seal threads that looked at the free space
  int fitted_first_round = 0;
  bool gate_opened = false;
  std::atomic<int64_t> longest_wait_ms{0};
  std::atomic<int> waited_past_space_wait{0};
  thread_local std::chrono::steady_clock::time_point check_start;
  thread_local bool counted = false;
  thread_local bool holds_first_buffer = false;  // a writer thread
  int first_buffers = 0;  // writers past their first buffer's space check
  std::atomic<int64_t> clock_ms{0};
  const auto now = [&] {
    return std::chrono::steady_clock::time_point(
        std::chrono::milliseconds(clock_ms.load()));
  };
  FsHooks hooks;
  hooks.space_now = now;
  hooks.space_freed = [&] { clock_ms += 600; };
  hooks.space_check = [&](uint64_t, bool reserve) {
    if (!reserve) return;
    // Seal threads look only once every writer holds its first buffer. A
    // writer still short of one would wait for space behind the first two
    // reservations and never hand its first chunk to a seal thread, and
    // the gate below would wait for a look that cannot come (seen once
    // under ASan: 60 s, and a third seal fitted after the gate timed out).
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait_for(lock, 30s, [&] { return first_buffers >= kWriters; });
    }
    check_start = now();
  };
  hooks.space_checked = [&](uint64_t, bool reserve, bool fits) {
    if (!reserve) {
      if (fits && !holds_first_buffer) {
        holds_first_buffer = true;
        std::lock_guard<std::mutex> lock(mu);
        first_buffers += 1;
        cv.notify_all();
      }
      return;
    }
    if (counted) return;
    counted = true;  // a seal thread counts once, at its first look
    std::lock_guard<std::mutex> lock(mu);
    checked += 1;
    if (fits && !gate_opened) fitted_first_round += 1;
    if (checked >= kWriters) gate_opened = true;
    cv.notify_all();
  };
  FsOptions o = TestOptions();
  o.seal_threads = kWriters;
  o.dirty_buffers = 2 * kWriters;
  o.max_buffers_per_file = 2;
  o.space_wait = 1s;
  on_stage_ = [&] {
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        now() - check_start);
    int64_t seen = longest_wait_ms.load();
    while (waited.count() > seen &&
           !longest_wait_ms.compare_exchange_weak(seen, waited.count())) {
    }
    if (waited > o.space_wait) waited_past_space_wait += 1;
    // The gate: no stage begins before every seal thread has looked.
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, 30s, [&] { return gate_opened; });
  };
  MountOnDisk(2 * kChunkOnDisk + kBlock, o, hooks);

  std::vector<std::string> data;
  std::vector<uint64_t> inos;
  for (int i = 0; i < kWriters; ++i) {
    data.push_back(RandomBytes(2 * kC + 1000 + i, 900 + i));
    inos.push_back(Create("w" + std::to_string(i)));
  }
  std::vector<Status> results(kWriters);
  std::vector<std::thread> writers;
  for (int i = 0; i < kWriters; ++i) {
    writers.emplace_back([&, i] {
      // Most writers start late, as under ASan: their first buffers then
      // come after the first seals could have reserved all the space, the
      // interleaving the wait in space_check exists for. The outcome does
      // not depend on this sleep; it only makes that interleaving certain.
      if (i >= 2) std::this_thread::sleep_for(std::chrono::milliseconds(200));
      auto h = fs_->Open(inos[i]);
      if (!h.ok()) {
        results[i] = h.status();
        return;
      }
      for (size_t done = 0; done < data[i].size();) {
        const size_t n = std::min<size_t>(1 << 20, data[i].size() - done);
        auto r = fs_->Write(h->get(), done, data[i].data() + done, n);
        if (!r.ok() || *r != n) {
          results[i] =
              r.ok() ? Status::Error(Code::kIo, "short write") : r.status();
          fs_->Release(std::move(*h)).IgnoreError();
          return;
        }
        done += n;
      }
      results[i] = fs_->Release(std::move(*h));
    });
  }
  for (auto& t : writers) t.join();
  for (int i = 0; i < kWriters; ++i)
    EXPECT_TRUE(results[i].ok())
        << "writer " << i << ": " << results[i].ToString();
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(first_buffers, kWriters);
    EXPECT_TRUE(gate_opened) << "only " << checked << " seal threads looked";
    // All eight looked before anyone staged, and only two got space.
    EXPECT_EQ(fitted_first_round, 2);
  }
  EXPECT_EQ(disk_->overflows(), 0);
  EXPECT_LE(disk_->peak(), disk_->budget());
  EXPECT_GE(disk_->stages(), 3 * kWriters);
  // Some seal thread waited longer than --space-wait while uploads freed
  // space: the case where a wait that does not restart on progress fails.
  EXPECT_GE(waited_past_space_wait.load(), 1)
      << "longest wait " << longest_wait_ms.load() << " ms: case missed";
  for (int i = 0; i < kWriters; ++i)
    EXPECT_TRUE(SameBytes(data[i], ReadFile(inos[i]))) << "writer " << i;
  Drain();
  Remount();  // drops the hooks (they refer to this test's locals)
  for (int i = 0; i < kWriters; ++i)
    EXPECT_TRUE(SameBytes(data[i], ReadFile(inos[i]))) << "writer " << i;
}

// The store refuses every put, so nothing can free space: the writer whose
// chunk does not fit gets ENOSPC, and only after --space-wait. A file whose
// chunk fit before is committed by its own close; a committed file reads
// back meanwhile; the failed writer's file keeps its committed (empty)
// content. Once the store takes puts again, the same file can be written.
//
// b's writer takes the buffers of its first two chunks before any of its
// seals may look for spill space (the hooks below): else, when b's first
// seal staged before the writer looked for the second buffer, the writer
// itself got ENOSPC for that buffer, nothing it had accepted was lost, and
// its close committed the first chunk (a different case, and this test
// failed now and then under load).
TEST_F(FsSpaceTest, EnospcOnlyAfterTheWaitAndOnlyToTheWriterThatDidNotFit) {
  std::mutex mu;
  std::condition_variable cv;
  bool armed = false;     // under mu: b is being written
  int buffers_taken = 0;  // under mu: buffers b's writer got since
  FsHooks hooks;
  hooks.space_check = [&](uint64_t, bool reserve) {
    if (!reserve) return;
    std::unique_lock<std::mutex> lock(mu);
    if (!armed) return;
    // Bounds a hang only.
    cv.wait_for(lock, 60s, [&] { return buffers_taken >= 2; });
  };
  hooks.space_checked = [&](uint64_t, bool reserve, bool fits) {
    if (reserve || !fits) return;
    std::lock_guard<std::mutex> lock(mu);  // space_mu_ -> mu: a leaf
    if (!armed) return;
    buffers_taken += 1;
    cv.notify_all();
  };
  FsOptions o = TestOptions();
  o.seal_threads = 2;
  o.space_wait = 1s;
  MountOnDisk(2 * kChunkOnDisk + kBlock, o, hooks);
  const std::string a = RandomBytes(2 * kC + 10, 31);
  const uint64_t a_ino = WriteFile("a", a);
  Drain();
  ASSERT_EQ(SpillCount(), 0u);

  gated_->full = true;
  // c's one chunk takes the first of the two places, and its close commits.
  const std::string c = RandomBytes(kC, 32);
  const uint64_t c_ino = WriteFile("c", c);
  EXPECT_EQ(SpillCount(), 1u);

  // b's first chunk takes the second place; its second cannot fit.
  const std::string b = RandomBytes(3 * kC, 33);
  const uint64_t b_ino = Create("b");
  auto h = OpenH(b_ino);
  const uint64_t uploaded = uploader_->stats().uploaded_chunks;
  {
    std::lock_guard<std::mutex> lock(mu);
    armed = true;
  }
  const auto start = std::chrono::steady_clock::now();
  Status first_error;
  for (size_t done = 0; done < b.size() && first_error.ok();) {
    const size_t n = std::min<size_t>(1 << 20, b.size() - done);
    auto r = fs_->Write(h.get(), done, b.data() + done, n);
    if (!r.ok()) first_error = r.status();
    done += n;
  }
  Status closed = fs_->Release(std::move(h));
  const auto waited = std::chrono::steady_clock::now() - start;
  {
    std::lock_guard<std::mutex> lock(mu);
    armed = false;
    EXPECT_GE(buffers_taken, 2);
  }
  if (first_error.ok()) first_error = closed;
  EXPECT_EQ(ErrnoOf(first_error), ENOSPC) << first_error.ToString();
  EXPECT_FALSE(closed.ok()) << "close of b must report the lost writes";
  EXPECT_GE(waited, o.space_wait) << "ENOSPC before the space wait";
  EXPECT_EQ(uploader_->stats().uploaded_chunks, uploaded) << "progress made";
  EXPECT_EQ(disk_->overflows(), 0);
  EXPECT_LE(disk_->peak(), disk_->budget());

  // Nobody else was touched.
  EXPECT_TRUE(SameBytes(a, ReadFile(a_ino)));
  EXPECT_TRUE(SameBytes(c, ReadFile(c_ino)));
  EXPECT_EQ(SizeOf(b_ino), 0u);

  // Space returns: b can be written now, through the same tiny spill (its
  // chunks were dropped, so they are staged again, not deduplicated).
  gated_->full = false;
  h = OpenH(b_ino);
  WriteAt(h.get(), 0, b);
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  EXPECT_TRUE(SameBytes(b, ReadFile(b_ino)));
  EXPECT_EQ(disk_->overflows(), 0);
  Remount();
  EXPECT_TRUE(SameBytes(a, ReadFile(a_ino)));
  EXPECT_TRUE(SameBytes(b, ReadFile(b_ino)));
  EXPECT_TRUE(SameBytes(c, ReadFile(c_ino)));
}

// A big writer waits for spill space (the store refuses puts, the spill
// holds one chunk): a small file, new or appended to, still goes in and its
// close commits, without one look at the spill's space from its thread,
// since its one chunk is staged in the index. A file that starts small
// waits at the write that takes it past what the index stages, like any
// other writer. Once puts succeed everyone finishes, and everything reads
// back equal, also after a remount. (Before 2026-12-07 every new buffer
// waited for room for a whole chunk: the small file waited behind the big
// writer, and got ENOSPC with it.)
TEST_F(FsSpaceTest, SmallFilesGoInWhileABigWriterWaitsForSpace) {
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::thread::id, int> refused;  // looks that found no room
  std::set<std::thread::id> looked;        // every thread that looked
  FsHooks hooks;
  hooks.space_check = [&](uint64_t, bool) {
    std::lock_guard<std::mutex> lock(mu);
    looked.insert(std::this_thread::get_id());
  };
  hooks.space_checked = [&](uint64_t, bool, bool fits) {
    if (fits) return;
    std::lock_guard<std::mutex> lock(mu);  // space_mu_ -> mu: a leaf
    refused[std::this_thread::get_id()] += 1;
    cv.notify_all();
  };
  FsOptions o = TestOptions();
  o.space_wait = 30s;  // nobody gets ENOSPC here
  MountOnDisk(kChunkOnDisk + kBlock, o, hooks);
  const std::string before = RandomBytes(3000, 51);
  const uint64_t log_ino = WriteFile("log", before);
  Drain();
  ASSERT_EQ(SpillCount(), 0u);

  gated_->full = true;
  // Waits until thread `id` has found no room at least once.
  const auto wait_refused = [&](std::thread::id id) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, 60s, [&] { return refused[id] >= 1; });
  };
  // big's first chunk fills the spill; its second waits for room.
  const std::string big = RandomBytes(2 * kC + 100, 52);
  const uint64_t big_ino = Create("big");
  Status big_done;
  std::atomic<bool> big_finished{false};
  std::promise<std::thread::id> big_id;
  std::thread big_writer([&] {
    big_id.set_value(std::this_thread::get_id());
    auto h = OpenH(big_ino);
    for (size_t done = 0; done < big.size() && big_done.ok();) {
      const size_t n = std::min<size_t>(1 << 20, big.size() - done);
      auto r = fs_->Write(h.get(), done, big.data() + done, n);
      if (!r.ok()) big_done = r.status();
      done += n;
    }
    Status closed = fs_->Release(std::move(h));
    if (big_done.ok()) big_done = closed;
    big_finished = true;
  });
  big_id.get_future().get();
  {
    // Its second chunk's seal (in a seal thread, or in its close) finds
    // no room.
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 60s, [&] { return !refused.empty(); }))
        << "the big writer never waited";
  }

  // Meanwhile: a new small file, and an append to an existing one.
  const auto start = std::chrono::steady_clock::now();
  const std::string small = RandomBytes(20000, 53);
  const uint64_t small_ino = WriteFile("small", small);
  const std::string more = RandomBytes(5000, 54);
  {
    auto h = OpenH(log_ino);
    WriteAt(h.get(), before.size(), more);
    WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(looked.count(std::this_thread::get_id()), 0u)
        << "a small file looked for spill space";
  }
  EXPECT_FALSE(big_finished.load()) << "the big writer stopped waiting";
  EXPECT_TRUE(SameBytes(small, ReadFile(small_ino)));
  EXPECT_TRUE(SameBytes(before + more, ReadFile(log_ino)));

  // grow: small at first (no look), then a write that takes its first
  // chunk past what the index stages, which waits for room.
  const uint64_t grow_ino = Create("grow");
  const std::string grow = RandomBytes(300000, 55);
  Status grow_done;
  std::promise<std::thread::id> grow_id;
  std::promise<void> grow_small_in;
  std::promise<void> grow_on;
  std::thread grower([&] {
    grow_id.set_value(std::this_thread::get_id());
    auto h = OpenH(grow_ino);
    auto r = fs_->Write(h.get(), 0, grow.data(), 10000);
    if (!r.ok()) grow_done = r.status();
    grow_small_in.set_value();
    grow_on.get_future().get();
    if (grow_done.ok()) {
      r = fs_->Write(h.get(), 10000, grow.data() + 10000, grow.size() - 10000);
      if (!r.ok()) grow_done = r.status();
    }
    Status closed = fs_->Release(std::move(h));
    if (grow_done.ok()) grow_done = closed;
  });
  const std::thread::id grow_thread = grow_id.get_future().get();
  grow_small_in.get_future().get();
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(looked.count(grow_thread), 0u)
        << "a 10000-byte first write looked for spill space";
  }
  grow_on.set_value();
  EXPECT_TRUE(wait_refused(grow_thread))
      << "the write past the index's size did not wait for spill space";

  gated_->full = false;  // uploads free the spill
  big_writer.join();
  grower.join();
  WAVEFS_EXPECT_OK(big_done);
  WAVEFS_EXPECT_OK(grow_done);
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  EXPECT_TRUE(SameBytes(grow, ReadFile(grow_ino)));
  EXPECT_EQ(disk_->overflows(), 0);
  Drain();
  Remount();  // drops the hooks (they refer to this test's locals)
  EXPECT_TRUE(SameBytes(big, ReadFile(big_ino)));
  EXPECT_TRUE(SameBytes(grow, ReadFile(grow_ino)));
  EXPECT_TRUE(SameBytes(small, ReadFile(small_ino)));
  EXPECT_TRUE(SameBytes(before + more, ReadFile(log_ino)));
}

// Regression (found by it_full_disk's eight writers): the last staged
// chunks were removed by the uploader after the writer read the free bytes
// and before it listed the spill, so it saw a full spill, nothing pending
// and nothing staged, and gave ENOSPC on a spill that was empty by then.
// Forced: the store refuses puts, so chunk 0 stays staged and queued, with
// no reservation left; the writer's look for chunk 1's buffer then finds no
// room, and the hook lets the puts through and holds that look until the
// uploader has removed every staged file. (Holding a look while another
// chunk is being staged would block that stage's end, so the test waits for
// chunk 0 to be queued before it writes chunk 1.)
TEST_F(FsSpaceTest, NoEnospcWhenTheLastStagedChunkLeavesDuringTheCheck) {
  std::atomic<int> held{0};
  FsHooks hooks;
  hooks.space_checked = [&](uint64_t, bool, bool fits) {
    if (fits || held.fetch_add(1) > 0) return;
    gated_->full = false;
    // Safe under space_mu_: the uploader removes files before it calls
    // back into the pipeline.
    EXPECT_TRUE(WaitFor(
        [&] {
          return SpillCount() == 0 && uploader_->stats().pending_chunks == 0;
        },
        30s));
  };
  FsOptions o = TestOptions();
  o.space_wait = 30s;
  MountOnDisk(kChunkOnDisk + kBlock, o, hooks);
  gated_->full = true;  // chunk 0 stays in the spill
  const std::string data = RandomBytes(2 * kC + 5, 41);
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  WriteAt(h.get(), 0, data.substr(0, kC));  // full: sealed, staged, queued
  ASSERT_TRUE(
      WaitFor([&] { return uploader_->stats().pending_chunks == 1; }, 30s));
  EXPECT_EQ(held.load(), 0);
  WriteAt(h.get(), kC, data.substr(kC));  // chunk 1's buffer does not fit
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  EXPECT_GE(held.load(), 1) << "no look found the spill full";
  EXPECT_FALSE(gated_->full.load());
  EXPECT_EQ(disk_->overflows(), 0);
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
  Remount();  // drops the hooks (they refer to this test's locals)
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

}  // namespace
}  // namespace wavefs
