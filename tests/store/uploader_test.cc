// Tests of the wave uploader with a real index and spill in a temporary
// directory and an in-memory store with fault injection.
#include "store/uploader.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "chunker/crypto.h"
#include "store/fault_store.h"
#include "store/forwarding_store.h"
#include "store/index.h"
#include "store/memory_store.h"
#include "store/spill.h"
#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::WaitFor;

using testing_util::MakeBytes;
using testing_util::TempDir;
using namespace std::chrono_literals;

// Passes every call to an inner store and checks what the uploader promised
// at the moment of each put and each sync: the chunk is still staged and
// still queued (nothing is forgotten before the store has it durably).
// Also measures how many puts run at once, and can fail syncs.
class ProbeStore : public ChunkStore {
 public:
  ProbeStore(ChunkStore* inner, Spill* spill, Index* index)
      : inner_(inner), spill_(spill), index_(index) {}

  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override {
    const int now = ++active_;
    int seen = max_active_.load();
    while (now > seen && !max_active_.compare_exchange_weak(seen, now)) {
    }
    puts_ += 1;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!putting_.insert(address).second) same_chunk_at_once_ += 1;
    }
    CheckStillStagedAndQueued(address);
    if (put_delay_.count() > 0) std::this_thread::sleep_for(put_delay_);
    Status st = inner_->Put(address, ciphertext);
    {
      std::lock_guard<std::mutex> lock(mu_);
      putting_.erase(address);
      if (st.ok()) unsynced_.insert(address);
    }
    --active_;
    return st;
  }
  Status Sync() override {
    std::set<Address> unsynced;
    {
      std::lock_guard<std::mutex> lock(mu_);
      unsynced.swap(unsynced_);
    }
    for (const Address& a : unsynced) CheckStillStagedAndQueued(a);
    syncs_ += 1;
    if (fail_syncs_.load() > 0) {
      fail_syncs_ -= 1;
      std::lock_guard<std::mutex> lock(mu_);
      unsynced_.insert(unsynced.begin(), unsynced.end());
      return Status::Error(Code::kIo, "syncfs failed", EIO, true);
    }
    return inner_->Sync();
  }
  Status Get(const Address& address, std::vector<uint8_t>* out) override {
    return inner_->Get(address, out);
  }
  Result<bool> Has(const Address& address) override {
    return inner_->Has(address);
  }
  Status Remove(const Address& address) override {
    return inner_->Remove(address);
  }
  Status List(const std::function<void(const Address&)>& fn) override {
    return inner_->List(fn);
  }
  std::string Describe() const override { return "probe"; }

  void set_put_delay(std::chrono::milliseconds d) { put_delay_ = d; }
  void FailNextSyncs(int n) { fail_syncs_ = n; }
  int max_active() const { return max_active_.load(); }
  int violations() const { return violations_.load(); }
  int syncs() const { return syncs_.load(); }
  int puts() const { return puts_.load(); }
  // Puts of one chunk that overlapped (the uploader handed it out twice).
  int same_chunk_at_once() const { return same_chunk_at_once_.load(); }

 private:
  void CheckStillStagedAndQueued(const Address& address) {
    if (!spill_->Contains(address)) violations_ += 1;
    auto queued = index_->IsQueued(address);
    if (!queued.ok() || !*queued) violations_ += 1;
  }

  ChunkStore* inner_;
  Spill* spill_;
  Index* index_;
  std::chrono::milliseconds put_delay_{0};
  std::atomic<int> active_{0};
  std::atomic<int> max_active_{0};
  std::atomic<int> violations_{0};
  std::atomic<int> syncs_{0};
  std::atomic<int> fail_syncs_{0};
  std::atomic<int> puts_{0};
  std::atomic<int> same_chunk_at_once_{0};
  std::mutex mu_;
  std::set<Address> unsynced_;
  std::set<Address> putting_;
};

// Passes every call on, except that the put of one chosen chunk blocks
// until Release(): a put that takes as long as the test wants.
class GateStore : public ChunkStore {
 public:
  GateStore(ChunkStore* inner, const Address& gated)
      : inner_(inner), gated_(gated) {}

  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override {
    if (address == gated_) {
      std::unique_lock<std::mutex> lock(mu_);
      entered_ = true;
      cv_.notify_all();
      cv_.wait(lock, [&] { return released_; });
    }
    Status st = inner_->Put(address, ciphertext);
    if (address == gated_) {
      std::lock_guard<std::mutex> lock(mu_);
      gated_put_returned_ = true;
    }
    return st;
  }
  Status Sync() override { return inner_->Sync(); }
  Status Get(const Address& address, std::vector<uint8_t>* out) override {
    return inner_->Get(address, out);
  }
  Result<bool> Has(const Address& address) override {
    return inner_->Has(address);
  }
  Status Remove(const Address& address) override {
    return inner_->Remove(address);
  }
  Status List(const std::function<void(const Address&)>& fn) override {
    return inner_->List(fn);
  }
  std::string Describe() const override { return "gate"; }

  // Waits until the gated put has begun (and is blocked).
  bool WaitEntered(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return entered_; });
  }
  bool gated_put_returned() {
    std::lock_guard<std::mutex> lock(mu_);
    return gated_put_returned_;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  ChunkStore* inner_;
  const Address gated_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool released_ = false;
  bool gated_put_returned_ = false;
};

// Passes every call on, counts the puts running at once (all, and those of
// more than big_bytes), and holds every put of more than big_bytes until
// Release(): big uploads as slow as the test wants.
class LaneStore : public ForwardingStore {
 public:
  LaneStore(ChunkStore* inner, size_t big_bytes)
      : ForwardingStore(inner), big_bytes_(big_bytes) {}

  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override {
    const bool big = ciphertext.size() > big_bytes_;
    {
      std::unique_lock<std::mutex> lock(mu_);
      active_ += 1;
      max_active_ = std::max(max_active_, active_);
      if (!big) small_puts_ += 1;
      if (big) {
        big_active_ += 1;
        max_big_active_ = std::max(max_big_active_, big_active_);
        cv_.notify_all();
        cv_.wait(lock, [&] { return released_; });
      }
    }
    Status st = inner()->Put(address, ciphertext);
    std::lock_guard<std::mutex> lock(mu_);
    active_ -= 1;
    if (big) big_active_ -= 1;
    return st;
  }
  // Staged chunks come as files: read, then through Put above.
  Status PutFile(const Address& address, const std::string& path,
                 std::vector<uint8_t>* scratch) override {
    return ChunkStore::PutFile(address, path, scratch);
  }

  // Waits until n big puts are held at once.
  bool WaitBigHeld(int n, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return big_active_ >= n; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  int max_active() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_active_;
  }
  int max_big_active() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_big_active_;
  }
  int small_puts() {
    std::lock_guard<std::mutex> lock(mu_);
    return small_puts_;
  }

 private:
  const size_t big_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
  int active_ = 0;
  int max_active_ = 0;
  int big_active_ = 0;
  int max_big_active_ = 0;
  int small_puts_ = 0;
};

// Records the order of puts and syncs and checks, at every call and from a
// thread polling the spill, the uploader's promise: a staged chunk's spill
// file is gone only once the chunk was put and a Sync() that began after
// that put returned has returned ok. Every `fail_every`-th sync fails.
class OrderStore : public ChunkStore {
 public:
  OrderStore(ChunkStore* inner, Spill* spill, int fail_every)
      : inner_(inner), spill_(spill), fail_every_(fail_every) {}
  ~OrderStore() override { StopWatching(); }

  // The chunks to watch; starts the polling thread.
  void Watch(const std::vector<Address>& addresses) {
    watched_ = addresses;
    watcher_ = std::thread([this] {
      while (!stop_watching_.load()) {
        Check("watcher");
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  void StopWatching() {
    stop_watching_ = true;
    if (watcher_.joinable()) watcher_.join();
  }

  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override {
    Check("put");
    Status st = inner_->Put(address, ciphertext);
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t seq = ++seq_;
    if (st.ok()) put_done_[address] = seq;
    Log(seq, "put " + ToHex(address).substr(0, 8) + (st.ok() ? "" : " failed"));
    return st;
  }
  Status Sync() override {
    if (++syncing_ > 1) concurrent_syncs_ += 1;
    Check("sync");
    uint64_t start;
    int n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      start = ++seq_;
      n = ++syncs_;
      Log(start, "sync " + std::to_string(n) + " begins");
    }
    // Syncs take a moment (as syncfs does), so puts finish during them.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    Status st = fail_every_ > 0 && n % fail_every_ == 0
                    ? Status::Error(Code::kIo, "syncfs failed", EIO, true)
                    : inner_->Sync();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (st.ok()) synced_upto_ = std::max(synced_upto_, start);
      if (!st.ok()) failed_syncs_ += 1;
      Log(++seq_, "sync " + std::to_string(n) + (st.ok() ? " ok" : " failed"));
    }
    --syncing_;
    return st;
  }
  Status Get(const Address& address, std::vector<uint8_t>* out) override {
    return inner_->Get(address, out);
  }
  Result<bool> Has(const Address& address) override {
    return inner_->Has(address);
  }
  Status Remove(const Address& address) override {
    return inner_->Remove(address);
  }
  Status List(const std::function<void(const Address&)>& fn) override {
    return inner_->List(fn);
  }
  std::string Describe() const override { return "order"; }

  int violations() const { return violations_.load(); }
  int concurrent_syncs() const { return concurrent_syncs_.load(); }
  int failed_syncs() {
    std::lock_guard<std::mutex> lock(mu_);
    return failed_syncs_;
  }
  std::string first_violation() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_violation_;
  }

  // Every watched chunk whose spill file is gone must have been put, and a
  // sync begun after that put must have returned ok. (Spill files go only
  // after such a sync returned, so reading the records after seeing a file
  // gone never blames a correct uploader.)
  void Check(const char* who) {
    for (const Address& a : watched_) {
      if (spill_->Contains(a)) continue;
      std::lock_guard<std::mutex> lock(mu_);
      auto it = put_done_.find(a);
      const bool ok = it != put_done_.end() && it->second < synced_upto_;
      if (ok) continue;
      violations_ += 1;
      if (first_violation_.empty()) {
        first_violation_ =
            std::string(who) + " saw the spill file of " + ToHex(a) +
            " gone; put done at " +
            (it == put_done_.end() ? "never" : std::to_string(it->second)) +
            ", synced up to " + std::to_string(synced_upto_) + "; events:";
        for (const std::string& e : events_) first_violation_ += "\n  " + e;
      }
    }
  }

 private:
  void Log(uint64_t seq, const std::string& what) {  // mu_ held
    events_.push_back(std::to_string(seq) + " " + what);
    if (events_.size() > 40) events_.erase(events_.begin());
  }

  ChunkStore* inner_;
  Spill* spill_;
  const int fail_every_;
  std::vector<Address> watched_;
  std::thread watcher_;
  std::atomic<bool> stop_watching_{false};
  std::atomic<int> violations_{0};
  std::atomic<int> syncing_{0};
  std::atomic<int> concurrent_syncs_{0};
  std::mutex mu_;  // guards the rest
  uint64_t seq_ = 0;
  std::map<Address, uint64_t> put_done_;
  uint64_t synced_upto_ = 0;  // the start of the latest sync that returned ok
  int syncs_ = 0;
  int failed_syncs_ = 0;
  std::string first_violation_;
  std::vector<std::string> events_;
};

struct Staged {
  Address address;
  std::vector<uint8_t> bytes;
};

class UploaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitCrypto().ok());
    tmp_ = std::make_unique<TempDir>();
    OpenIndex();
    auto spill = Spill::Open(*tmp_ / "spill");
    ASSERT_TRUE(spill.ok()) << spill.status().ToString();
    spill_ = std::move(*spill);
    probe_ = std::make_unique<ProbeStore>(&faults_, spill_.get(), index_.get());
  }
  void TearDown() override {
    if (gate_) gate_->Release();  // else Stop waits for the blocked put
    if (lanes_) lanes_->Release();
    if (uploader_) uploader_->Stop();
    if (order_) order_->StopWatching();
    if (probe_) {
      EXPECT_EQ(probe_->same_chunk_at_once(), 0)
          << "a chunk was handed to two workers at once";
    }
    uploader_.reset();
    order_.reset();
    gate_.reset();
    lanes_.reset();
    probe_.reset();
    spill_.reset();
    index_.reset();
    tmp_.reset();
  }
  void OpenIndex() {
    index_.reset();
    auto index = Index::Open(*tmp_ / "index", Index::Options{});
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    index_ = std::move(*index);
  }

  // The chunks here are random bytes named by their SHA-256, as format 3
  // names objects: format 4 objects are sealed chunks (Format4 tests).
  static constexpr ChunkFormat kFormat = ChunkFormat::kSegmentedAes;
  static Uploader::Options FastOptions() {
    Uploader::Options o;
    o.format = kFormat;
    o.initial_backoff = 1ms;
    o.max_backoff = 20ms;
    o.gather = 5ms;
    return o;
  }
  void MakeUploader(Uploader::Options o = FastOptions()) {
    uploader_ =
        std::make_unique<Uploader>(index_.get(), spill_.get(), probe_.get(), o);
  }
  void MakeUploaderOn(ChunkStore* store, Uploader::Options o) {
    uploader_ =
        std::make_unique<Uploader>(index_.get(), spill_.get(), store, o);
  }
  // The chunk the uploader hands out first (the queue is in address order).
  static Address FirstInQueueOrder(const std::vector<Staged>& chunks) {
    Address first = chunks.front().address;
    for (const Staged& s : chunks) first = std::min(first, s.address);
    return first;
  }
  // An uploader of 2 lanes plus small_lanes on a LaneStore that holds
  // every put of more than small_max bytes, started.
  void StartOnLaneStore(size_t small_max, int small_lanes) {
    lanes_ = std::make_unique<LaneStore>(probe_.get(), small_max);
    Uploader::Options o = FastOptions();
    o.concurrency = 2;
    o.small_lanes = small_lanes;
    o.small_max_bytes = small_max;
    MakeUploaderOn(lanes_.get(), o);
    uploader_->Start();
    uploader_->Notify();
  }
  bool StoredAndGone(const Staged& s) {
    auto has = store_.Has(s.address);
    return has.ok() && *has && !spill_->Contains(s.address) &&
           !Queued(s.address) && Known(s.address);
  }

  // What the write path does for each sealed chunk: stage, then queue. The
  // bytes stand in for ciphertext; the address is their real hash.
  Staged StageOne(uint32_t seed, size_t size) {
    Staged s;
    s.bytes = MakeBytes(size, seed);
    s.address = AddressOf(kFormat, s.bytes);
    Status st = spill_->Stage(s.address, s.bytes);
    EXPECT_TRUE(st.ok()) << st.ToString();
    auto added = index_->EnqueueStaged(s.address, s.bytes.size());
    EXPECT_TRUE(added.ok() && *added);
    return s;
  }
  std::vector<Staged> StageMany(uint32_t first_seed, int n, size_t size) {
    std::vector<Staged> out;
    for (int i = 0; i < n; ++i)
      out.push_back(StageOne(first_seed + i, size + static_cast<size_t>(i)));
    return out;
  }

  size_t SpillCount() {
    size_t n = 0;
    Status st = spill_->List([&](const Address&) { ++n; });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return n;
  }
  size_t QueueCount() {
    std::vector<std::pair<Address, uint64_t>> q;
    WAVEFS_EXPECT_OK(index_->PeekQueue(100000, &q));
    return q.size();
  }
  bool Queued(const Address& a) {
    auto r = index_->IsQueued(a);
    EXPECT_TRUE(r.ok());
    return r.ok() && *r;
  }
  bool Known(const Address& a) {
    auto r = index_->IsKnown(a);
    EXPECT_TRUE(r.ok());
    return r.ok() && *r;
  }
  void ExpectAllStored(const std::vector<Staged>& chunks) {
    for (const Staged& s : chunks) {
      std::vector<uint8_t> got;
      Status st = store_.Get(s.address, &got);
      ASSERT_TRUE(st.ok()) << ToHex(s.address) << ": " << st.ToString();
      EXPECT_TRUE(got == s.bytes) << "wrong bytes for " << ToHex(s.address);
      EXPECT_FALSE(spill_->Contains(s.address));
      EXPECT_FALSE(Queued(s.address));
      EXPECT_TRUE(Known(s.address)) << "stored chunk must still dedup";
    }
  }
  void ExpectAllStillStaged(const std::vector<Staged>& chunks) {
    for (const Staged& s : chunks) {
      EXPECT_TRUE(spill_->Contains(s.address)) << ToHex(s.address);
      EXPECT_TRUE(Queued(s.address)) << ToHex(s.address);
      EXPECT_TRUE(Known(s.address)) << ToHex(s.address);
    }
  }

  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<Spill> spill_;
  MemoryStore store_;
  FaultStore faults_{
      &store_};  // between probe_ and store_; no rules by default
  std::unique_ptr<ProbeStore> probe_;
  std::unique_ptr<GateStore> gate_;    // outlives uploader_ (TearDown)
  std::unique_ptr<LaneStore> lanes_;   // likewise
  std::unique_ptr<OrderStore> order_;  // likewise
  std::unique_ptr<Uploader> uploader_;
};

TEST_F(UploaderTest, DrainUploadsEveryStagedChunk) {
  auto chunks = StageMany(1, 10, 1000);
  chunks.push_back(StageOne(500, kMaxCiphertextSize));  // a full chunk
  uint64_t total = 0;
  for (const auto& s : chunks) total += s.bytes.size();
  EXPECT_EQ(index_->pending_chunks(), chunks.size());
  EXPECT_EQ(index_->pending_bytes(), total);

  MakeUploader();
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));

  ExpectAllStored(chunks);
  EXPECT_EQ(store_.object_count(), chunks.size());
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_EQ(QueueCount(), 0u);
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(index_->pending_bytes(), 0u);
  // The wave's own bookkeeping may end just after Drain saw the empty queue.
  EXPECT_TRUE(WaitFor([&] { return uploader_->stats().waves >= 1; }, 30s));
  const Uploader::Stats s = uploader_->stats();
  EXPECT_EQ(s.uploaded_chunks, chunks.size());
  EXPECT_EQ(s.uploaded_bytes, total);
  EXPECT_EQ(s.pending_chunks, 0u);
  EXPECT_EQ(s.pending_bytes, 0u);
  EXPECT_TRUE(s.sticky_error.empty()) << s.sticky_error;
  EXPECT_GT(s.last_rate_mib_s, 0);
  EXPECT_EQ(probe_->violations(), 0);
  EXPECT_GE(probe_->syncs(), 1) << "uploads were never made durable";
}

TEST_F(UploaderTest, DrainWithNothingQueuedReturnsAtOnce) {
  MakeUploader();
  uploader_->Start();
  const auto start = std::chrono::steady_clock::now();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_EQ(store_.object_count(), 0u);
}

TEST_F(UploaderTest, ChunksQueuedAfterStartAreUploaded) {
  MakeUploader();
  uploader_->Start();
  auto first = StageMany(1, 3, 100);
  uploader_->Notify();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  auto second = StageMany(100, 3, 200);
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(first);
  ExpectAllStored(second);
  EXPECT_EQ(uploader_->stats().uploaded_chunks, 6u);
}

TEST_F(UploaderTest, NotifiedChunksAreUploadedWithoutDrain) {
  MakeUploader();
  uploader_->Start();
  auto chunks = StageMany(1, 3, 100);
  uploader_->Notify();
  // The queue empties before the spill files go: wait for both.
  EXPECT_TRUE(WaitFor(
      [&] { return index_->pending_chunks() == 0 && SpillCount() == 0; }, 30s))
      << "a notified, non-full wave never went out";
  ExpectAllStored(chunks);
}

TEST_F(UploaderTest, MoreThanOneWaveOfChunksGoesInSeveralWaves) {
  auto chunks = StageMany(1, 150, 64);
  MakeUploader();
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_EQ(QueueCount(), 0u);
  // A wave holds at most 64 chunks, so 150 need at least 3.
  EXPECT_TRUE(WaitFor([&] { return uploader_->stats().waves >= 3; }, 30s))
      << "waves: " << uploader_->stats().waves;
  EXPECT_EQ(uploader_->stats().uploaded_chunks, 150u);
  EXPECT_EQ(probe_->violations(), 0);
}

TEST_F(UploaderTest, WaveSizeOptionBoundsEachWave) {
  auto chunks = StageMany(1, 10, 64);
  Uploader::Options o = FastOptions();
  o.wave_size = 4;
  MakeUploader(o);
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
  EXPECT_TRUE(WaitFor([&] { return uploader_->stats().waves >= 3; }, 30s))
      << "waves: " << uploader_->stats().waves;
}

TEST_F(UploaderTest, ConcurrentPutsAreBoundedByConcurrency) {
  auto chunks = StageMany(1, 24, 64);
  probe_->set_put_delay(5ms);
  Uploader::Options o = FastOptions();
  o.concurrency = 3;
  MakeUploader(o);
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
  EXPECT_LE(probe_->max_active(), 3);
  EXPECT_GE(probe_->max_active(), 1);
}

TEST_F(UploaderTest, TransientPutFailuresAreRetried) {
  auto chunks = StageMany(1, 20, 500);
  faults_.FailPuts(
      Status::Error(Code::kUnavailable, "store timed out", ETIMEDOUT, true), 7);
  MakeUploader();
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_EQ(QueueCount(), 0u);
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(uploader_->stats().uploaded_chunks, 20u);
  EXPECT_TRUE(uploader_->stats().sticky_error.empty())
      << "a success must clear the sticky error: "
      << uploader_->stats().sticky_error;
  EXPECT_EQ(probe_->violations(), 0);
}

TEST_F(UploaderTest, NonRetryableFailureIsRetriedByALaterWave) {
  auto chunks = StageMany(1, 3, 500);
  faults_.FailPuts(Status::Error(Code::kIo, "disk hiccup"), 2);
  MakeUploader();
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
}

TEST_F(UploaderTest, StoreThatAlwaysFailsGivesUpAndKeepsTheChunk) {
  auto chunks = StageMany(1, 3, 777);
  faults_.FailPuts(Status::Error(Code::kUnavailable, "store unreachable",
                                 ECONNREFUSED, true),
                   FaultStore::kForever);
  MakeUploader();
  uploader_->Start();
  const auto start = std::chrono::steady_clock::now();
  Status st = uploader_->Drain(1s, nullptr);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(st.ok()) << "Drain reported success with nothing uploaded";
  EXPECT_NE(st.message().find("unreachable"), std::string::npos)
      << st.ToString();
  EXPECT_GE(took, 1s);
  EXPECT_LT(took, 15s);

  // Nothing left the spill or the queue: the store never confirmed a put.
  ExpectAllStillStaged(chunks);
  EXPECT_EQ(SpillCount(), 3u);
  EXPECT_EQ(QueueCount(), 3u);
  EXPECT_EQ(index_->pending_chunks(), 3u);
  EXPECT_EQ(store_.object_count(), 0u);
  const Uploader::Stats s = uploader_->stats();
  EXPECT_FALSE(s.sticky_error.empty());
  EXPECT_EQ(s.pending_chunks, 3u);
  EXPECT_EQ(s.uploaded_chunks, 0u);

  // Once the store answers again, the same queue drains and the error goes.
  faults_.LiftAll();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
  EXPECT_TRUE(uploader_->stats().sticky_error.empty())
      << "uploads work again but stats() still says: "
      << uploader_->stats().sticky_error;
}

TEST_F(UploaderTest, FailedSyncKeepsChunksStagedAndQueued) {
  // Puts that are not durable yet must not release the spill copies.
  auto chunks = StageMany(1, 4, 300);
  probe_->FailNextSyncs(INT_MAX);
  MakeUploader();
  uploader_->Start();
  Status st = uploader_->Drain(1s, nullptr);
  ASSERT_FALSE(st.ok()) << "Drain succeeded though the store never synced";
  ExpectAllStillStaged(chunks);
  EXPECT_EQ(index_->pending_chunks(), 4u);
  EXPECT_FALSE(uploader_->stats().sticky_error.empty());
  EXPECT_EQ(uploader_->stats().uploaded_chunks, 0u);

  probe_->FailNextSyncs(0);
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
  EXPECT_EQ(probe_->violations(), 0);
}

TEST_F(UploaderTest, StopIsPromptWhileBackingOff) {
  StageMany(1, 2, 100);
  faults_.FailPuts(Status::Error(Code::kUnavailable, "down", 0, true),
                   FaultStore::kForever);
  // A backoff far longer than the bound below, so that a Stop that waits
  // for it fails however fast or slow the machine is.
  Uploader::Options o;
  o.format = kFormat;
  o.initial_backoff = 300s;
  o.max_backoff = 300s;
  MakeUploader(o);
  uploader_->Start();
  uploader_->Notify();
  // A put has failed: its worker is backing off (or about to).
  ASSERT_TRUE(
      WaitFor([&] { return faults_.fired(FaultStore::Op::kPut) >= 1; }, 30s));
  const auto start = std::chrono::steady_clock::now();
  uploader_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 60s)
      << "unmount would hang for the whole backoff";
  EXPECT_EQ(index_->pending_chunks(), 2u);
  EXPECT_EQ(SpillCount(), 2u);
}

TEST_F(UploaderTest, QueuedChunkAlreadyInStoreButMissingFromSpillCompletes) {
  // A run that moved the chunk into the store and stopped before completing
  // its queue entry.
  Staged s = StageOne(1, 1234);
  WAVEFS_ASSERT_OK(store_.Put(s.address, s.bytes));
  WAVEFS_ASSERT_OK(spill_->Remove(s.address));
  auto other = StageMany(10, 2, 50);
  MakeUploader();
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  EXPECT_FALSE(Queued(s.address));
  EXPECT_TRUE(Known(s.address));
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(index_->pending_bytes(), 0u);
  ExpectAllStored(other);
  std::vector<uint8_t> got;
  WAVEFS_ASSERT_OK(store_.Get(s.address, &got));
  EXPECT_TRUE(got == s.bytes);
  EXPECT_TRUE(uploader_->stats().sticky_error.empty())
      << uploader_->stats().sticky_error;
}

TEST_F(UploaderTest, QueuedChunkLostEverywhereIsDroppedLoudly) {
  Staged s = StageOne(1, 100);
  WAVEFS_ASSERT_OK(spill_->Remove(s.address));
  MakeUploader();
  uploader_->Start();
  Status st = uploader_->Drain(60s, nullptr);
  (void)st;  // the queue is empty either way
  EXPECT_FALSE(Queued(s.address));
  // The address is forgotten so the next write of that content stages it
  // again instead of deduplicating against nothing.
  EXPECT_FALSE(Known(s.address));
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_TRUE(
      WaitFor([&] { return !uploader_->stats().sticky_error.empty(); }, 30s))
      << "a lost chunk must not be dropped silently";
  EXPECT_EQ(uploader_->stats().lost_chunks, 1u);
}

// Regression: the next successful wave cleared the error, and `wavefs
// status` said all was well while a data map named a chunk found nowhere.
TEST_F(UploaderTest, LostChunkStaysReportedAfterLaterWavesSucceed) {
  Staged lost = StageOne(1, 100);
  WAVEFS_ASSERT_OK(spill_->Remove(lost.address));
  MakeUploader();
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ASSERT_EQ(uploader_->stats().lost_chunks, 1u);
  Staged good = StageOne(2, 100);
  uploader_->Notify();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  EXPECT_FALSE(Queued(good.address));
  const Uploader::Stats st = uploader_->stats();
  EXPECT_EQ(st.lost_chunks, 1u);
  EXPECT_NE(st.sticky_error.find(ToHex(lost.address)), std::string::npos)
      << st.sticky_error;
}

TEST_F(UploaderTest, DamagedStoreCopyDoesNotCountAsUploaded) {
  // After a power loss a renamed-in object can exist without its bytes:
  // only an intact copy may complete a queue entry whose spill file is gone.
  Staged s = StageOne(1, 1000);
  std::vector<uint8_t> damaged = s.bytes;
  damaged[10] ^= 0xff;
  WAVEFS_ASSERT_OK(store_.Put(s.address, damaged));
  WAVEFS_ASSERT_OK(spill_->Remove(s.address));
  MakeUploader();
  uploader_->Start();
  Status st = uploader_->Drain(60s, nullptr);
  (void)st;
  EXPECT_FALSE(Known(s.address))
      << "a damaged store copy was taken for the chunk: later writes of the "
         "same content would deduplicate against it";
  EXPECT_TRUE(
      WaitFor([&] { return !uploader_->stats().sticky_error.empty(); }, 30s));
}

TEST_F(UploaderTest, PendingUploadsResumeAfterReopen) {
  auto chunks = StageMany(1, 5, 300);
  // "Crash": close the index with the queue full and nothing uploaded.
  OpenIndex();
  probe_ = std::make_unique<ProbeStore>(&faults_, spill_.get(), index_.get());
  EXPECT_EQ(index_->pending_chunks(), 5u);
  MakeUploader();
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
  EXPECT_EQ(SpillCount(), 0u);
}

TEST_F(UploaderTest, SpaceFreedCallbackRunsAsChunksLeaveTheSpill) {
  StageMany(1, 5, 100);
  MakeUploader();
  std::atomic<int> freed{0};
  uploader_->SetSpaceFreedCallback([&] { freed += 1; });
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  EXPECT_TRUE(WaitFor([&] { return freed.load() >= 1; }, 30s));
  uploader_->SetSpaceFreedCallback(nullptr);
}

// Regression: the daemon destroys the Filesystem (whose callback this is)
// right after Drain; a callback still running then used freed memory.
TEST_F(UploaderTest, SpaceFreedCallbackDoesNotRunAfterItIsCleared) {
  StageMany(1, 1, 100);
  MakeUploader();
  std::atomic<bool> cleared{false};
  std::atomic<bool> ran_after_clear{false};
  std::atomic<int> calls{0};
  uploader_->SetSpaceFreedCallback([&] {
    calls += 1;
    // A callback that takes a moment makes the window easy to hit.
    std::this_thread::sleep_for(300ms);
    if (cleared.load()) ran_after_clear = true;
  });
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  // What ~Filesystem does before its members go away.
  uploader_->SetSpaceFreedCallback(nullptr);
  cleared = true;
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(ran_after_clear.load())
      << "the cleared callback was still running: its owner may be gone";
  uploader_->Stop();
  EXPECT_LE(calls.load(), 1);
}

TEST_F(UploaderTest, StopThenDestroyWithoutStartIsSafe) {
  MakeUploader();
  uploader_->Stop();
  uploader_.reset();
  MakeUploader();  // destroyed in TearDown without Start
}

// The pipeline: a put that takes long (here: blocked until released) holds
// up nothing but its own chunk. With waves, the other chunks of its wave
// waited for it, and so did every chunk queued after them.
TEST_F(UploaderTest, SlowPutDoesNotHoldUpOtherChunks) {
  auto chunks = StageMany(1, 21, 1000);
  const Address slow = FirstInQueueOrder(chunks);
  gate_ = std::make_unique<GateStore>(probe_.get(), slow);
  Uploader::Options o = FastOptions();
  o.concurrency = 2;
  MakeUploaderOn(gate_.get(), o);
  uploader_->Start();
  uploader_->Notify();
  ASSERT_TRUE(gate_->WaitEntered(30s)) << "the slow chunk was never put";

  std::vector<Staged> others;
  for (const Staged& s : chunks) {
    if (s.address != slow) others.push_back(s);
  }
  ASSERT_EQ(others.size(), 20u);
  const bool others_done = WaitFor(
      [&] {
        for (const Staged& s : others) {
          if (!StoredAndGone(s)) return false;
        }
        return true;
      },
      30s);
  EXPECT_TRUE(others_done)
      << "chunks waited for an unrelated slow put to finish";
  EXPECT_TRUE(
      WaitFor([&] { return uploader_->stats().uploaded_chunks == 20u; }, 30s))
      << uploader_->stats().uploaded_chunks;
  // Meanwhile the slow chunk is still being put, still staged and queued.
  EXPECT_FALSE(gate_->gated_put_returned());
  EXPECT_TRUE(spill_->Contains(slow));
  EXPECT_TRUE(Queued(slow));
  EXPECT_EQ(index_->pending_chunks(), 1u);

  gate_->Release();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_EQ(probe_->violations(), 0);
}

// Small chunks (small files, tails) cost the store's round trip: they get
// lanes of their own beside the big chunks', so a tree of small files is
// not uploaded `concurrency` objects at a time, and slow big puts hold up
// none of them. Big chunks never take more than `concurrency` lanes.
TEST_F(UploaderTest, SmallChunksTakeExtraLanesBigOnesAreBoundedByConcurrency) {
  constexpr size_t kSmallMax = 2000;
  auto big = StageMany(1, 6, 5000);
  auto small = StageMany(100, 40, 100);
  StartOnLaneStore(kSmallMax, 4);
  ASSERT_TRUE(lanes_->WaitBigHeld(2, 30s)) << "big chunks were not put";
  // Both big lanes are held: every small chunk still goes, through the
  // other lanes, and no third big put starts.
  const bool small_done = WaitFor(
      [&] {
        for (const Staged& s : small) {
          if (!StoredAndGone(s)) return false;
        }
        return true;
      },
      30s);
  EXPECT_TRUE(small_done) << "small chunks waited for big puts";
  EXPECT_EQ(lanes_->max_big_active(), 2);
  for (const Staged& s : big) EXPECT_TRUE(Queued(s.address));

  lanes_->Release();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(big);
  ExpectAllStored(small);
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_EQ(lanes_->max_big_active(), 2);
  EXPECT_LE(lanes_->max_active(), 6);
  // The small lanes were used: more puts at once than `concurrency`.
  EXPECT_GT(lanes_->max_active(), 2);
  EXPECT_EQ(probe_->violations(), 0);
}

// Without small lanes every chunk shares the `concurrency` lanes: a held
// big put takes one of them.
TEST_F(UploaderTest, WithoutSmallLanesHeldBigPutsTakeTheLanes) {
  constexpr size_t kSmallMax = 2000;
  auto big = StageMany(1, 2, 5000);
  auto small = StageMany(100, 10, 100);
  StartOnLaneStore(kSmallMax, 0);
  ASSERT_TRUE(lanes_->WaitBigHeld(2, 30s));
  // Both lanes are held: no small chunk is put any more.
  const int before = lanes_->small_puts();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(lanes_->small_puts(), before);
  lanes_->Release();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(big);
  ExpectAllStored(small);
  EXPECT_LE(lanes_->max_active(), 2);
}

// Chunks staged while puts are running are picked up at once: no waiting
// for the running ones to finish and no Drain needed.
TEST_F(UploaderTest, ChunksStagedWhileUploadsRunArePickedUpWithoutDrain) {
  auto first = StageMany(1, 5, 1000);
  const Address slow = FirstInQueueOrder(first);
  gate_ = std::make_unique<GateStore>(probe_.get(), slow);
  Uploader::Options o = FastOptions();
  o.concurrency = 2;
  MakeUploaderOn(gate_.get(), o);
  uploader_->Start();
  uploader_->Notify();
  ASSERT_TRUE(gate_->WaitEntered(30s));

  // An upload is running (and will until released); a writer stages more.
  auto second = StageMany(100, 10, 2000);
  uploader_->Notify();
  const bool second_done = WaitFor(
      [&] {
        for (const Staged& s : second) {
          if (!StoredAndGone(s)) return false;
        }
        return true;
      },
      30s);
  EXPECT_TRUE(second_done) << "chunks staged during an upload waited for it";
  EXPECT_FALSE(gate_->gated_put_returned());
  EXPECT_TRUE(Queued(slow));

  gate_->Release();
  EXPECT_TRUE(WaitFor(
      [&] { return index_->pending_chunks() == 0 && SpillCount() == 0; }, 30s))
      << "pending: " << index_->pending_chunks();
  ExpectAllStored(first);
  ExpectAllStored(second);
  EXPECT_EQ(probe_->violations(), 0);
}

// The durability promise, checked at every put and sync and by a thread
// watching the spill: a spill file goes only after its put AND a later
// Sync() returned ok, also when syncs fail now and then (every 3rd here:
// what a failed sync covered must be put and synced again) and while puts
// overlap completions (several small batches, 3 workers).
TEST_F(UploaderTest, SpillFileGoesOnlyAfterItsPutAndALaterSync) {
  auto chunks = StageMany(1, 120, 300);
  order_ = std::make_unique<OrderStore>(probe_.get(), spill_.get(), 3);
  std::vector<Address> addresses;
  for (const Staged& s : chunks) addresses.push_back(s.address);
  order_->Watch(addresses);
  probe_->set_put_delay(1ms);  // lets puts overlap completions
  Uploader::Options o = FastOptions();
  o.concurrency = 3;
  o.wave_size = 8;
  MakeUploaderOn(order_.get(), o);
  uploader_->Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  order_->StopWatching();
  order_->Check("end");

  ExpectAllStored(chunks);
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_EQ(order_->violations(), 0) << order_->first_violation();
  EXPECT_GE(order_->failed_syncs(), 1) << "no sync failed: test too weak";
  EXPECT_EQ(order_->concurrent_syncs(), 0) << "two Sync() calls overlapped";
  EXPECT_EQ(probe_->violations(), 0);
  EXPECT_TRUE(
      WaitFor([&] { return uploader_->stats().sticky_error.empty(); }, 30s))
      << uploader_->stats().sticky_error;
}

// A store that keeps failing is not hammered: after a put fails for good
// the uploader pauses (backoff) and then probes with one chunk at a time,
// instead of every worker retrying its own chunk in a loop.
TEST_F(UploaderTest, FailingStoreIsProbedNotHammered) {
  StageMany(1, 16, 100);
  faults_.FailPuts(Status::Error(Code::kUnavailable, "store unreachable",
                                 ECONNREFUSED, true),
                   FaultStore::kForever);
  Uploader::Options o = FastOptions();
  o.concurrency = 4;
  o.max_attempts = 2;
  o.initial_backoff = 20ms;
  o.max_backoff = 100ms;
  MakeUploader(o);
  uploader_->Start();
  uploader_->Notify();
  // The store was found failing (a chunk's two attempts failed): wait for
  // that instead of hoping a fixed time is enough for it.
  ASSERT_TRUE(
      WaitFor([&] { return !uploader_->stats().sticky_error.empty(); }, 30s));
  const int before = probe_->puts();
  EXPECT_GE(before, 2);
  // The window observed. It only bounds the puts from above, and a slower
  // machine only makes fewer.
  std::this_thread::sleep_for(1000ms);
  const int puts = probe_->puts() - before;
  // Four workers retrying freely: ~4 puts per 20-40 ms, over 100 in the
  // second. Paused and probing: 2 per pause (20, 40, 80, 100, 100... ms),
  // ~20.
  EXPECT_LT(puts, 60) << "the failing store was hammered";
  EXPECT_FALSE(uploader_->stats().sticky_error.empty());
  EXPECT_EQ(index_->pending_chunks(), 16u);

  // Once it answers, everything goes.
  faults_.LiftAll();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(SpillCount(), 0u);
}

}  // namespace
}  // namespace wavefs
