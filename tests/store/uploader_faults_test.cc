// The uploader against a real store (memory, a local directory, and S3 when
// WAVEFS_S3_ENDPOINT names one) with faults injected by a FaultStore: what
// the daemon does on a bad day. Every outcome is decided by the FaultStore's
// rules, hooks and counters, never by a sleep.
#include <gtest/gtest.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "chunker/crypto.h"
#include "store/fault_store.h"
#include "store/index.h"
#include "store/local_store.h"
#include "store/memory_store.h"
#include "store/s3_store.h"
#include "store/spill.h"
#include "store/store_location.h"
#include "store/uploader.h"
#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::MakeBytes;
using testing_util::TempDir;
using testing_util::WaitFor;
using namespace std::chrono_literals;
using Op = FaultStore::Op;

// Keeps the lines logged at warning level and above.
class CaptureSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // Lines at `level` that contain `text`.
  int Count(spdlog::level::level_enum level, const std::string& text) {
    std::lock_guard<std::mutex> lock(mutex_);
    int n = 0;
    for (const auto& [l, line] : lines_) {
      if (l == level && line.find(text) != std::string::npos) ++n;
    }
    return n;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    lines_.emplace_back(msg.level,
                        std::string(msg.payload.begin(), msg.payload.end()));
  }
  void flush_() override {}

 private:
  std::vector<std::pair<spdlog::level::level_enum, std::string>> lines_;
};

struct Staged {
  Address address;
  std::vector<uint8_t> bytes;
};

class UploaderFaultsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitCrypto().ok());
    tmp_ = std::make_unique<TempDir>();
    auto index = Index::Open(*tmp_ / "index", Index::Options{});
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    index_ = std::move(*index);
    auto spill = Spill::Open(*tmp_ / "spill");
    ASSERT_TRUE(spill.ok()) << spill.status().ToString();
    spill_ = std::move(*spill);
    std::unique_ptr<ChunkStore> inner;
    if (GetParam() == "memory") {
      inner = std::make_unique<MemoryStore>();
    } else if (GetParam() == "local") {
      // Same filesystem as the spill: puts move staged files in by rename.
      auto local = LocalStore::Open(*tmp_ / "store");
      ASSERT_TRUE(local.ok()) << local.status().ToString();
      inner = std::move(*local);
    } else {
      inner = OpenS3();
      if (!inner) return;  // skipped or failed
    }
    inner_ = inner.get();
    faults_ = std::make_unique<FaultStore>(std::move(inner));
    sink_ = std::make_shared<CaptureSink>();
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  void TearDown() override {
    if (uploader_) uploader_->Stop();
    uploader_.reset();
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }

  // An S3 store on the server WAVEFS_S3_ENDPOINT names (tests/s3/with_rgw.sh
  // sets it), under a fresh prefix; null (test skipped) without one.
  std::unique_ptr<ChunkStore> OpenS3() {
    const char* endpoint = std::getenv("WAVEFS_S3_ENDPOINT");
    if (endpoint == nullptr || *endpoint == 0) {
      skipped_ = true;
      return nullptr;
    }
    auto loc = ParseStoreLocation(
        std::string("s3://wavefs-faults/t") +
        ToHex(testing_util::MakeAddress(std::random_device{}())).substr(0, 12) +
        "?endpoint=" + endpoint);
    EXPECT_TRUE(loc.ok()) << loc.status().ToString();
    if (!loc.ok()) return nullptr;
    Status creds = LoadS3Credentials(&loc->s3);
    EXPECT_TRUE(creds.ok()) << creds.ToString();
    auto client = std::make_shared<S3Client>(loc->s3);
    Status made = client->CreateBucket();
    EXPECT_TRUE(made.ok()) << made.ToString();
    return std::make_unique<S3Store>(client, kS3DefaultChunkFormat);
  }
  bool Skipped() const { return skipped_ || faults_ == nullptr; }

  static Uploader::Options Options() {
    Uploader::Options o;
    o.format = kS3DefaultChunkFormat;  // random bytes named by their SHA-256
    o.initial_backoff = 2ms;
    o.max_backoff = 20ms;
    o.gather = 5ms;
    return o;
  }
  void Start(Uploader::Options o = Options()) {
    uploader_ = std::make_unique<Uploader>(index_.get(), spill_.get(),
                                           faults_.get(), o);
    uploader_->Start();
    uploader_->Notify();
  }

  // What the write path does for a sealed chunk: stage, then queue.
  Staged StageOne(uint32_t seed, size_t size) {
    Staged s;
    s.bytes = MakeBytes(size, seed);
    s.address = AddressOf(kS3DefaultChunkFormat, s.bytes);
    WAVEFS_EXPECT_OK(spill_->Stage(s.address, s.bytes));
    auto added = index_->EnqueueStaged(s.address, s.bytes.size());
    EXPECT_TRUE(added.ok() && *added);
    return s;
  }
  std::vector<Staged> StageMany(uint32_t first_seed, int n) {
    std::vector<Staged> out;
    for (int i = 0; i < n; ++i) {
      out.push_back(StageOne(first_seed + i, 3000 + static_cast<size_t>(i)));
    }
    return out;
  }
  bool Queued(const Address& a) {
    auto r = index_->IsQueued(a);
    return r.ok() && *r;
  }
  size_t StoredCount() {
    size_t n = 0;
    WAVEFS_EXPECT_OK(inner_->List([&](const Address&) { ++n; }));
    return n;
  }
  // Every chunk is in the store with its exact bytes, out of the spill and
  // the queue.
  void ExpectAllStored(const std::vector<Staged>& chunks) {
    for (const Staged& s : chunks) {
      std::vector<uint8_t> got;
      Status st = inner_->Get(s.address, &got);
      ASSERT_TRUE(st.ok()) << ToHex(s.address) << ": " << st.ToString();
      EXPECT_TRUE(got == s.bytes) << "wrong bytes for " << ToHex(s.address);
      EXPECT_FALSE(spill_->Contains(s.address));
      EXPECT_FALSE(Queued(s.address));
    }
    EXPECT_EQ(index_->pending_chunks(), 0u);
  }
  // Nothing was let go: every chunk is still staged and queued.
  void ExpectAllKept(const std::vector<Staged>& chunks) {
    for (const Staged& s : chunks) {
      EXPECT_TRUE(spill_->Contains(s.address)) << ToHex(s.address);
      EXPECT_TRUE(Queued(s.address)) << ToHex(s.address);
    }
    EXPECT_EQ(index_->pending_chunks(), chunks.size());
  }
  // Records which chunks the uploader tried to put, and when.
  void RecordPuts() {
    faults_->SetHook(Op::kPut, [this](const Address* a) {
      std::lock_guard<std::mutex> lock(mu_);
      put_times_[*a].push_back(std::chrono::steady_clock::now());
    });
  }
  size_t ChunksTried() {
    std::lock_guard<std::mutex> lock(mu_);
    return put_times_.size();
  }
  size_t PutsOf(const Address& a) {
    std::lock_guard<std::mutex> lock(mu_);
    return put_times_[a].size();
  }

  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<Spill> spill_;
  ChunkStore* inner_ = nullptr;  // owned by faults_
  std::unique_ptr<FaultStore> faults_;
  std::unique_ptr<Uploader> uploader_;
  std::shared_ptr<CaptureSink> sink_;
  bool skipped_ = false;
  std::mutex mu_;
  std::map<Address, std::vector<std::chrono::steady_clock::time_point>>
      put_times_;
};

#define SKIP_WITHOUT_STORE() \
  if (Skipped()) GTEST_SKIP() << "no S3 endpoint (WAVEFS_S3_ENDPOINT)"

TEST_P(UploaderFaultsTest, RetryablePutErrorsAreRetriedWithBackoff) {
  SKIP_WITHOUT_STORE();
  auto chunks = StageMany(1, 10);
  // One chunk fails three times in a row (its retries back off), and
  // four more puts of any chunks fail after that.
  FaultStore::Rule r;
  r.op = Op::kPut;
  r.times = 3;
  r.status = FaultStore::Retryable("503 Slow Down");
  r.only = chunks[4].address;
  faults_->Add(r);
  faults_->FailPuts(FaultStore::Retryable("timed out"), 4, /*skip=*/2);
  RecordPuts();
  Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));

  ExpectAllStored(chunks);
  EXPECT_EQ(faults_->fired(Op::kPut), 7u);
  EXPECT_EQ(faults_->calls(Op::kPut), 17u) << "every failed put, and only "
                                              "those, was put again";
  const auto times = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    return put_times_[chunks[4].address];
  }();
  ASSERT_GE(times.size(), 4u);
  // Backoff doubles from initial_backoff (2, 4, 8 ms at least).
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_GE(times[i] - times[i - 1], std::chrono::milliseconds(1 << i))
        << "retry " << i << " came without backing off";
  }
  EXPECT_TRUE(WaitFor(
      [&] { return uploader_->stats().uploaded_chunks == chunks.size(); },
      30s));
  EXPECT_TRUE(uploader_->stats().sticky_error.empty())
      << uploader_->stats().sticky_error;
}

TEST_P(UploaderFaultsTest, PermanentErrorIsStickyLoggedOnceAndKeepsChunks) {
  SKIP_WITHOUT_STORE();
  auto chunks = StageMany(1, 8);
  const auto denied = faults_->FailPuts(
      FaultStore::Permanent("403 AccessDenied"), FaultStore::kForever);
  RecordPuts();
  Start();
  // Every chunk has been tried (and failed) at least once.
  ASSERT_TRUE(WaitFor([&] { return ChunksTried() == chunks.size(); }, 30s));
  ASSERT_TRUE(WaitFor([&] { return faults_->fired(Op::kPut) >= 16; }, 30s));

  const Uploader::Stats st = uploader_->stats();
  EXPECT_NE(st.sticky_error.find("403 AccessDenied"), std::string::npos)
      << st.sticky_error;
  EXPECT_EQ(st.uploaded_chunks, 0u);
  EXPECT_EQ(st.pending_chunks, chunks.size());
  ExpectAllKept(chunks);
  EXPECT_EQ(StoredCount(), 0u);
  EXPECT_EQ(sink_->Count(spdlog::level::err, "403 AccessDenied"), 1)
      << "a failing store is logged once, not once per chunk or attempt";
  EXPECT_EQ(sink_->Count(spdlog::level::warn, "403 AccessDenied"), 0);

  faults_->Lift(denied);
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
  EXPECT_TRUE(
      WaitFor([&] { return uploader_->stats().sticky_error.empty(); }, 30s))
      << uploader_->stats().sticky_error;
  EXPECT_EQ(sink_->Count(spdlog::level::info, "uploads work again"), 1);
}

TEST_P(UploaderFaultsTest, NoSpaceInTheStoreKeepsDataInTheSpill) {
  SKIP_WITHOUT_STORE();
  auto chunks = StageMany(1, 5);
  const auto full = faults_->FillUp();
  RecordPuts();
  Start();
  ASSERT_TRUE(WaitFor([&] { return ChunksTried() == chunks.size(); }, 30s));
  ASSERT_TRUE(
      WaitFor([&] { return !uploader_->stats().sticky_error.empty(); }, 30s));
  EXPECT_NE(uploader_->stats().sticky_error.find("No space left"),
            std::string::npos)
      << uploader_->stats().sticky_error;
  ExpectAllKept(chunks);
  EXPECT_EQ(StoredCount(), 0u);

  faults_->Lift(full);
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ExpectAllStored(chunks);
}

TEST_P(UploaderFaultsTest, FailedSyncCompletesNothingAndPutsChunksAgain) {
  SKIP_WITHOUT_STORE();
  auto chunks = StageMany(1, 6);
  faults_->FailSyncs(FaultStore::Errno(EIO), 1);
  RecordPuts();
  // At the failing Sync: what had been put. At the next one: nothing of it
  // may have completed in between.
  std::map<Address, size_t> put_before_failure;
  int kept_violations = 0;
  int syncs = 0;
  faults_->SetHook(Op::kSync, [&](const Address*) {
    std::lock_guard<std::mutex> lock(mu_);
    syncs += 1;
    if (syncs == 1) {
      for (const auto& [a, t] : put_times_) put_before_failure[a] = t.size();
    } else if (syncs == 2) {
      for (const auto& [a, n] : put_before_failure) {
        if (!Queued(a)) ++kept_violations;
      }
    }
  });
  Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  // Hooks run on the uploader's threads: stop them before reading.
  uploader_->Stop();

  EXPECT_EQ(faults_->fired(Op::kSync), 1u);
  ASSERT_FALSE(put_before_failure.empty());
  EXPECT_EQ(kept_violations, 0)
      << "a queue entry completed on the strength of a failed Sync";
  for (const auto& [a, n] : put_before_failure) {
    EXPECT_GT(PutsOf(a), n) << ToHex(a) << " was not put again";
  }
  ExpectAllStored(chunks);
}

TEST_P(UploaderFaultsTest, TornAndCorruptPutsAreCaughtByVerification) {
  SKIP_WITHOUT_STORE();
  auto chunks = StageMany(1, 4);
  faults_->TearPuts(100, 1);            // the first put stores 100 bytes
  faults_->CorruptPuts(1, /*skip=*/1);  // the second one a flipped byte
  Uploader::Options o = Options();
  o.verify_puts = true;
  Start(o);
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  EXPECT_EQ(faults_->fired(Op::kPut), 2u);
  ExpectAllStored(chunks);
  EXPECT_EQ(faults_->calls(Op::kPut), 6u) << "the two damaged puts, again";
  EXPECT_TRUE(
      WaitFor([&] { return uploader_->stats().sticky_error.empty(); }, 30s));
}

TEST_P(UploaderFaultsTest, UnverifiedTornPutIsDetectableNotSilentlyRight) {
  SKIP_WITHOUT_STORE();
  // Without verify_puts the uploader trusts the store's ok (S3 checks the
  // signed SHA-256 or the ETag, a local store moves the staged file itself):
  // the damage is only seen when the chunk is read, where it must be an error
  // (the read path: tests/fs/fault_test.cc). Here: the stored object does not
  // hash to its address, so any check can tell.
  Staged s = StageOne(1, 5000);
  faults_->TearPuts(100, 1);
  Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  EXPECT_EQ(faults_->fired(Op::kPut), 1u);
  std::vector<uint8_t> got;
  WAVEFS_ASSERT_OK(inner_->Get(s.address, &got));
  if (GetParam() == "s3") {
    // A format-3 S3 store signs the address as the payload's SHA-256: the
    // server refused the torn body, and the next attempt stored it whole.
    EXPECT_EQ(got, s.bytes);
    return;
  }
  EXPECT_EQ(got.size(), 100u);
  EXPECT_NE(AddressOf(kS3DefaultChunkFormat, got), s.address);
}

TEST_P(UploaderFaultsTest, LostChunkStaysReportedAfterLaterWavesSucceed) {
  SKIP_WITHOUT_STORE();
  Staged lost = StageOne(1, 100);
  WAVEFS_ASSERT_OK(spill_->Remove(lost.address));
  Start();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  ASSERT_EQ(uploader_->stats().lost_chunks, 1u);
  // A failing spell and a recovery in between do not wipe it either.
  const auto down = faults_->FailPuts(FaultStore::Permanent(), 2);
  auto later = StageMany(10, 3);
  uploader_->Notify();
  WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
  (void)down;
  ExpectAllStored(later);
  // The lost chunk made no wave; the later chunks made at least one.
  EXPECT_TRUE(WaitFor([&] { return uploader_->stats().waves >= 1; }, 30s));
  EXPECT_EQ(faults_->fired(Op::kPut), 2u);
  const Uploader::Stats st = uploader_->stats();
  EXPECT_EQ(st.lost_chunks, 1u);
  EXPECT_NE(st.lost_error.find(ToHex(lost.address)), std::string::npos);
  EXPECT_NE(st.sticky_error.find(ToHex(lost.address)), std::string::npos)
      << "status says all is well: " << st.sticky_error;
}

INSTANTIATE_TEST_SUITE_P(Stores, UploaderFaultsTest,
                         ::testing::Values("memory", "local", "s3"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace wavefs
