// ChunkCache (store/chunk_cache.h): least recently used out, by entries and,
// with a budget, by bytes; one load per missing chunk however many ask.
#include "store/chunk_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace wavefs {
namespace {

Address A(uint8_t n) {
  Address a{};
  a[0] = n;
  return a;
}

ChunkCache::Loader Bytes(size_t n, std::atomic<int>* loads) {
  return [n, loads]() -> Result<ChunkData> {
    loads->fetch_add(1);
    return ChunkData(std::make_shared<std::vector<uint8_t>>(n, 7));
  };
}

TEST(ChunkCacheTest, ABudgetKeepsManySmallEntriesOrAFewBigOnes) {
  // Room for 64 entries, but only 1 MiB.
  ChunkCache cache(64, 1 << 20);
  std::atomic<int> loads{0};
  for (uint8_t i = 0; i < 40; ++i)
    ASSERT_TRUE(cache.GetOrLoad(A(i), Bytes(10000, &loads)).ok());
  EXPECT_EQ(cache.size(), 40u) << "small entries fit by bytes";
  for (uint8_t i = 0; i < 40; ++i) EXPECT_TRUE(cache.Contains(A(i)));
  // Two of 400 KiB: the least recently used small ones go to make room.
  ASSERT_TRUE(cache.GetOrLoad(A(100), Bytes(400 << 10, &loads)).ok());
  ASSERT_TRUE(cache.GetOrLoad(A(101), Bytes(400 << 10, &loads)).ok());
  EXPECT_TRUE(cache.Contains(A(100)));
  EXPECT_TRUE(cache.Contains(A(101)));
  EXPECT_FALSE(cache.Contains(A(0)));
  EXPECT_TRUE(cache.Contains(A(39)));
  EXPECT_LT(cache.size(), 40u);
  // One entry bigger than the whole budget stays, alone.
  ASSERT_TRUE(cache.GetOrLoad(A(102), Bytes(2 << 20, &loads)).ok());
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_TRUE(cache.Contains(A(102)));
  // Entries of a few bytes count 4 KiB each: at most 256 in 1 MiB, and the
  // entry limit (64) comes first.
  for (uint8_t i = 0; i < 80; ++i)
    ASSERT_TRUE(cache.GetOrLoad(A(i), Bytes(3, &loads)).ok());
  EXPECT_EQ(cache.size(), 64u);
}

TEST(ChunkCacheTest, WithoutABudgetOnlyTheEntriesCount) {
  ChunkCache cache(2);
  std::atomic<int> loads{0};
  ASSERT_TRUE(cache.GetOrLoad(A(1), Bytes(4 << 20, &loads)).ok());
  ASSERT_TRUE(cache.GetOrLoad(A(2), Bytes(4 << 20, &loads)).ok());
  ASSERT_TRUE(cache.GetOrLoad(A(1), Bytes(4 << 20, &loads)).ok());  // hit
  EXPECT_EQ(loads.load(), 2);
  ASSERT_TRUE(cache.GetOrLoad(A(3), Bytes(10, &loads)).ok());
  EXPECT_TRUE(cache.Contains(A(1)));
  EXPECT_FALSE(cache.Contains(A(2))) << "not the least recently used out";
  EXPECT_EQ(cache.size(), 2u);
}

TEST(ChunkCacheTest, ReadersOfOneMissingChunkLoadItOnce) {
  ChunkCache cache(4, 1 << 20);
  std::atomic<int> loads{0};
  std::atomic<bool> go{false};
  auto slow = [&]() -> Result<ChunkData> {
    loads.fetch_add(1);
    while (!go.load()) std::this_thread::yield();
    return ChunkData(std::make_shared<std::vector<uint8_t>>(100, 1));
  };
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i)
    readers.emplace_back(
        [&] { EXPECT_TRUE(cache.GetOrLoad(A(9), slow).ok()); });
  while (loads.load() == 0) std::this_thread::yield();
  go = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(loads.load(), 1);
}

}  // namespace
}  // namespace wavefs
