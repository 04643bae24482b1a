// Pins and share records in the index (store/index_shares.cc): the counts
// gc reads, and that removing one share drops exactly its own pins.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "store/index.h"
#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::MakeAddress;
using testing_util::TempDir;

class IndexPinsTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }
  void TearDown() override {
    if (index_) {
      EXPECT_TRUE(index_->Close().ok());
    }
  }
  void Reopen() {
    if (index_) {
      ASSERT_TRUE(index_->Close().ok());
    }
    index_.reset();
    auto opened = Index::Open(tmp_ / "index", Index::Options{});
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    index_ = std::move(*opened);
  }
  uint64_t Count(uint32_t seed) {
    auto n = index_->PinCount(MakeAddress(seed));
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    return n.ok() ? *n : ~0ull;
  }
  std::map<Address, uint64_t> Pinned() {
    std::map<Address, uint64_t> out;
    Status s = index_->ListPinned([&](const Address& a, uint64_t n) {
      out[a] = n;
      return true;
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }
  static ShareId Id(uint8_t b) {
    ShareId id{};
    id.fill(b);
    return id;
  }

  TempDir tmp_;
  std::unique_ptr<Index> index_;
};

TEST_F(IndexPinsTest, PinAndUnpinCount) {
  ASSERT_TRUE(index_->PinChunks({MakeAddress(1), MakeAddress(2)}).ok());
  ASSERT_TRUE(index_->PinChunks({MakeAddress(1)}).ok());
  EXPECT_EQ(Count(1), 2u);
  EXPECT_EQ(Count(2), 1u);
  EXPECT_EQ(Count(3), 0u);
  ASSERT_TRUE(index_->UnpinChunks({MakeAddress(1), MakeAddress(2)}).ok());
  EXPECT_EQ(Count(1), 1u);
  EXPECT_EQ(Count(2), 0u);
  auto pinned = Pinned();
  ASSERT_EQ(pinned.size(), 1u);  // a count of zero leaves no key
  EXPECT_EQ(pinned[MakeAddress(1)], 1u);
}

TEST_F(IndexPinsTest, DuplicatesInOneCallCountOnce) {
  ASSERT_TRUE(index_->PinChunks({MakeAddress(1), MakeAddress(1)}).ok());
  EXPECT_EQ(Count(1), 1u);
}

TEST_F(IndexPinsTest, UnpinOfUnpinnedChangesNothing) {
  ASSERT_TRUE(index_->PinChunks({MakeAddress(1)}).ok());
  Status s = index_->UnpinChunks({MakeAddress(1), MakeAddress(9)});
  EXPECT_EQ(s.code(), Code::kInvalid);
  EXPECT_EQ(Count(1), 1u);
}

TEST_F(IndexPinsTest, PinKeyLayoutIsWhatGcReads) {
  // gc treats every 'P' + 32-byte address key as live, with a u64le count.
  ASSERT_TRUE(index_->PinChunks({MakeAddress(7)}).ok());
  ASSERT_TRUE(index_->PinChunks({MakeAddress(7)}).ok());
  auto pinned = Pinned();
  ASSERT_EQ(pinned.size(), 1u);
  EXPECT_EQ(pinned.begin()->first, MakeAddress(7));
  EXPECT_EQ(pinned.begin()->second, 2u);
}

TEST_F(IndexPinsTest, TwoSharesOfOneChunkUnshareOneStillPinned) {
  const Address shared = MakeAddress(1);
  ASSERT_TRUE(index_->AddShare(Id(1), {shared, MakeAddress(2)}, "one").ok());
  ASSERT_TRUE(index_->AddShare(Id(2), {shared, MakeAddress(3)}, "two").ok());
  EXPECT_EQ(Count(1), 2u);
  ASSERT_TRUE(index_->RemoveShare(Id(1)).ok());
  EXPECT_EQ(Count(1), 1u);  // still pinned by share 2
  EXPECT_EQ(Count(2), 0u);
  EXPECT_EQ(Count(3), 1u);
  EXPECT_EQ(index_->GetSharePayload(Id(1)).status().code(), Code::kNotFound);
  EXPECT_EQ(index_->RemoveShare(Id(1)).code(), Code::kNotFound);
  ASSERT_TRUE(index_->RemoveShare(Id(2)).ok());
  EXPECT_TRUE(Pinned().empty());
}

TEST_F(IndexPinsTest, ShareRecordSurvivesReopen) {
  std::string payload(200000, 'x');  // bigger than an xattr page
  payload[12345] = 'y';
  ASSERT_TRUE(index_->AddShare(Id(5), {MakeAddress(4)}, payload).ok());
  EXPECT_EQ(index_->AddShare(Id(5), {MakeAddress(4)}, "again").code(),
            Code::kExists);
  EXPECT_EQ(Count(4), 1u);  // the refused AddShare pinned nothing
  Reopen();
  auto got = index_->GetSharePayload(Id(5));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, payload);
  auto addrs = index_->GetShareAddresses(Id(5));
  ASSERT_TRUE(addrs.ok());
  EXPECT_EQ(*addrs, std::vector<Address>{MakeAddress(4)});
  std::vector<std::pair<ShareId, uint64_t>> shares;
  ASSERT_TRUE(index_
                  ->ListShares([&](const ShareId& id, uint64_t n) {
                    shares.emplace_back(id, n);
                    return true;
                  })
                  .ok());
  ASSERT_EQ(shares.size(), 1u);
  EXPECT_EQ(shares[0].first, Id(5));
  EXPECT_EQ(shares[0].second, 1u);
  EXPECT_EQ(Count(4), 1u);
}

TEST_F(IndexPinsTest, PinsAndRemoveShareCompose) {
  // A direct pin (e.g. a future import) and a share of the same chunk.
  ASSERT_TRUE(index_->PinChunks({MakeAddress(1)}).ok());
  ASSERT_TRUE(index_->AddShare(Id(1), {MakeAddress(1)}, "").ok());
  ASSERT_TRUE(index_->RemoveShare(Id(1)).ok());
  EXPECT_EQ(Count(1), 1u);
}

}  // namespace
}  // namespace wavefs
