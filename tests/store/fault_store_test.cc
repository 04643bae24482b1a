// Tests of FaultStore itself: each rule fires exactly where it says, and
// a store with no rules (or lifted ones) is transparent. What the uploader
// and the read path do with the faults is in uploader_faults_test.cc and
// tests/fs/fault_test.cc.
#include "store/fault_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "store/local_store.h"
#include "store/memory_store.h"
#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::MakeAddress;
using testing_util::MakeBytes;
using testing_util::PathExists;
using testing_util::TempDir;
using testing_util::WriteTestFile;
using Op = FaultStore::Op;

class FaultStoreTest : public ::testing::Test {
 protected:
  MemoryStore memory_;
  FaultStore store_{&memory_};
};

TEST_F(FaultStoreTest, FailPutsFailsExactlyTheChosenCalls) {
  // Let two through, fail the next two, then let everything through.
  store_.FailPuts(FaultStore::Retryable("503"), /*times=*/2, /*skip=*/2);
  std::vector<Code> got;
  for (uint32_t i = 1; i <= 6; ++i) {
    got.push_back(store_.Put(MakeAddress(i), MakeBytes(10, i)).code());
  }
  EXPECT_EQ(got, (std::vector<Code>{Code::kOk, Code::kOk, Code::kUnavailable,
                                    Code::kUnavailable, Code::kOk, Code::kOk}));
  EXPECT_EQ(memory_.object_count(), 4u);
  EXPECT_FALSE(*memory_.Has(MakeAddress(3)));
  EXPECT_EQ(store_.calls(Op::kPut), 6u);
  EXPECT_EQ(store_.fired(Op::kPut), 2u);
  EXPECT_EQ(store_.fired(), 2u);
}

TEST_F(FaultStoreTest, StatusesCarryRetryabilityAndErrno) {
  EXPECT_TRUE(FaultStore::Retryable().retryable());
  EXPECT_FALSE(FaultStore::Permanent().retryable());
  EXPECT_EQ(FaultStore::Permanent().code(), Code::kPermission);
  EXPECT_EQ(FaultStore::NoSpace().code(), Code::kNoSpace);
  EXPECT_EQ(FaultStore::NoSpace().sys_errno(), ENOSPC);
  EXPECT_EQ(FaultStore::Errno(EROFS).sys_errno(), EROFS);

  store_.FillUp();
  for (uint32_t i = 1; i <= 3; ++i) {
    Status st = store_.Put(MakeAddress(i), MakeBytes(10, i));
    EXPECT_EQ(st.code(), Code::kNoSpace);
    EXPECT_EQ(st.sys_errno(), ENOSPC);
  }
  EXPECT_EQ(memory_.object_count(), 0u);
}

TEST_F(FaultStoreTest, LiftedRuleStopsFiring) {
  const auto id =
      store_.FailPuts(FaultStore::Permanent(), FaultStore::kForever);
  EXPECT_FALSE(store_.Put(MakeAddress(1), MakeBytes(10, 1)).ok());
  EXPECT_FALSE(store_.Put(MakeAddress(1), MakeBytes(10, 1)).ok());
  store_.Lift(id);
  WAVEFS_EXPECT_OK(store_.Put(MakeAddress(1), MakeBytes(10, 1)));
  EXPECT_EQ(store_.fired(Op::kPut), 2u);
}

TEST_F(FaultStoreTest, RuleForOneAddressLeavesOthersAlone) {
  FaultStore::Rule r;
  r.op = Op::kPut;
  r.times = FaultStore::kForever;
  r.status = FaultStore::Permanent();
  r.only = MakeAddress(2);
  store_.Add(r);
  WAVEFS_EXPECT_OK(store_.Put(MakeAddress(1), MakeBytes(10, 1)));
  EXPECT_EQ(store_.Put(MakeAddress(2), MakeBytes(10, 2)).code(),
            Code::kPermission);
  WAVEFS_EXPECT_OK(store_.Put(MakeAddress(3), MakeBytes(10, 3)));
}

TEST_F(FaultStoreTest, FailuresHitPutFileAndGetRangeToo) {
  TempDir tmp;
  WriteTestFile(tmp / "f", MakeBytes(10, 2));
  store_.FailPuts(FaultStore::Retryable());
  std::vector<uint8_t> scratch;
  EXPECT_EQ(store_.PutFile(MakeAddress(2), tmp / "f", &scratch).code(),
            Code::kUnavailable);
  WAVEFS_EXPECT_OK(store_.PutFile(MakeAddress(2), tmp / "f", &scratch));

  store_.FailGets(FaultStore::Errno(EIO));
  std::vector<uint8_t> out;
  EXPECT_EQ(store_.GetRange(MakeAddress(2), 0, 4, &out).code(), Code::kIo);
  WAVEFS_EXPECT_OK(store_.GetRange(MakeAddress(2), 0, 4, &out));
  const auto bytes = MakeBytes(10, 2);
  EXPECT_EQ(out, std::vector<uint8_t>(bytes.begin(), bytes.begin() + 4));
}

TEST_F(FaultStoreTest, TornPutStoresAPrefixAndReturnsOk) {
  const auto bytes = MakeBytes(1000, 1);
  store_.TearPuts(100);
  WAVEFS_ASSERT_OK(store_.Put(MakeAddress(1), bytes));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(memory_.Get(MakeAddress(1), &out));
  EXPECT_EQ(out, std::vector<uint8_t>(bytes.begin(), bytes.begin() + 100));
  EXPECT_EQ(store_.fired(Op::kPut), 1u);
}

TEST_F(FaultStoreTest, CorruptPutFlipsOneByteAndReturnsOk) {
  const auto bytes = MakeBytes(1000, 1);
  store_.CorruptPuts();
  WAVEFS_ASSERT_OK(store_.Put(MakeAddress(1), bytes));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(memory_.Get(MakeAddress(1), &out));
  ASSERT_EQ(out.size(), bytes.size());
  size_t differ = 0;
  for (size_t i = 0; i < out.size(); ++i) differ += out[i] != bytes[i];
  EXPECT_EQ(differ, 1u);
}

TEST(FaultStoreLocalTest, DamagedPutFileLeavesTheStagedFileInPlace) {
  // Over a store that renames files in, a torn put must still store the
  // torn bytes (not the intact file) and leave the source where it was.
  TempDir tmp;
  auto local = LocalStore::Open(tmp / "chunks");
  ASSERT_TRUE(local.ok());
  LocalStore* inner = local->get();
  FaultStore store(std::move(*local));
  const auto bytes = MakeBytes(5000, 3);
  WriteTestFile(tmp / "f", bytes);
  store.TearPuts(10);
  std::vector<uint8_t> scratch;
  WAVEFS_ASSERT_OK(store.PutFile(MakeAddress(3), tmp / "f", &scratch));
  EXPECT_TRUE(PathExists(tmp / "f"));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(inner->Get(MakeAddress(3), &out));
  EXPECT_EQ(out.size(), 10u);
}

TEST_F(FaultStoreTest, FailSyncFailsOnlySync) {
  store_.FailSyncs(FaultStore::Errno(EIO), 1);
  EXPECT_EQ(store_.Sync().code(), Code::kIo);
  WAVEFS_EXPECT_OK(store_.Sync());
  WAVEFS_EXPECT_OK(store_.Put(MakeAddress(1), MakeBytes(10, 1)));
  EXPECT_EQ(store_.fired(Op::kSync), 1u);
  EXPECT_EQ(store_.fired(Op::kPut), 0u);
}

TEST_F(FaultStoreTest, HookRunsBeforeTheCallWithItsAddress) {
  std::vector<Address> seen;
  store_.SetHook(Op::kPut, [&](const Address* a) { seen.push_back(*a); });
  WAVEFS_ASSERT_OK(store_.Put(MakeAddress(7), MakeBytes(10, 7)));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], MakeAddress(7));
  store_.LiftAll();
  WAVEFS_ASSERT_OK(store_.Put(MakeAddress(8), MakeBytes(10, 8)));
  EXPECT_EQ(seen.size(), 1u);
}

TEST_F(FaultStoreTest, ConcurrentCallsFireExactlyTheRulesTimes) {
  store_.FailPuts(FaultStore::Retryable(), 50);
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint32_t i = 0; i < 100; ++i) {
        const uint32_t seed = static_cast<uint32_t>(t) * 1000 + i;
        if (!store_.Put(MakeAddress(seed), MakeBytes(8, seed)).ok()) ++failed;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 50);
  EXPECT_EQ(store_.fired(Op::kPut), 50u);
  EXPECT_EQ(memory_.object_count(), 350u);
}

}  // namespace
}  // namespace wavefs
