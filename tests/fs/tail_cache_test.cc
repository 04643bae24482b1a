// TailCache (fs/tail_cache.h) alone, and appends through the Filesystem:
// an append by a separate open must not fetch the tail it sealed a moment
// before (on S3 that was one GET per `echo >> log`).
#include "fs/tail_cache.h"

#include "fs_fixture.h"

namespace wavefs {
namespace {

using namespace fs_testing;

Address Addr(uint8_t b) {
  Address a{};
  a[0] = b;
  return a;
}
ChunkData Bytes(size_t n, uint8_t v) {
  const std::vector<uint8_t> plain(n, v);
  return CopyWiped(plain.data(), plain.size());  // as the seal makes them
}

TEST(TailCacheTest, KeepsWithinItsBudgetLeastRecentlyUsedOut) {
  TailCache c(100, 60);
  EXPECT_FALSE(c.Wants(0));
  EXPECT_FALSE(c.Wants(61));
  EXPECT_TRUE(c.Wants(60));
  c.Put(Addr(1), Bytes(40, 1));
  c.Put(Addr(2), Bytes(40, 2));
  ASSERT_TRUE(c.Get(Addr(1)));   // 1 is now the most recent
  c.Put(Addr(3), Bytes(40, 3));  // 120 > 100: the least recent (2) goes
  EXPECT_FALSE(c.Get(Addr(2)));
  ASSERT_TRUE(c.Get(Addr(1)));
  ASSERT_TRUE(c.Get(Addr(3)));
  EXPECT_EQ((*c.Get(Addr(3)))[39], 3);
  EXPECT_EQ(c.bytes(), 80u);
  c.Put(Addr(4), Bytes(61, 4));  // larger than an entry may be: not kept
  EXPECT_FALSE(c.Get(Addr(4)));
  EXPECT_EQ(c.bytes(), 80u);
  c.Put(Addr(1), Bytes(40, 9));  // an address names one plaintext: kept as is
  EXPECT_EQ((*c.Get(Addr(1)))[0], 1);
  EXPECT_EQ(c.bytes(), 80u);
  EXPECT_EQ(c.hits(), 5u);
}

TEST_F(FsTest, AppendsBySeparateOpensFetchNothing) {
  // Appends that seal at each close (the tail journal's fallback).
  FsOptions o = TestOptions();
  o.tail_journal = false;
  Remount(o);
  std::string want = "line 0 of the log\n";
  const uint64_t ino = WriteFile("log", want);
  Drain();  // every version goes to the store before the next append
  const uint64_t gets = store_->gets();
  for (int i = 1; i <= 40; ++i) {
    const std::string line = "line " + std::to_string(i) + " of the log\n";
    auto h = OpenH(ino);
    ASSERT_TRUE(h);
    WriteAt(h.get(), want.size(), line);
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
    want += line;
    Drain();
  }
  EXPECT_EQ(store_->gets(), gets) << "an append fetched the tail it sealed";
  EXPECT_NE(fs_->StatsText("").find("tail_cache_hits=40\n"), std::string::npos)
      << fs_->StatsText("");
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
  Remount();  // nothing cached: the store's copy is the same bytes
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
}

TEST_F(FsTest, AppendsToATailTooBigToCacheFetchItAndStayRight) {
  // Appends that seal at each close (the tail journal's fallback).
  FsOptions o = TestOptions();
  o.tail_journal = false;
  Remount(o);
  // A tail over the cache's entry size (256 KiB) is fetched as before.
  std::string want = RandomBytes(kC + 300 * 1024, 401);
  const uint64_t ino = WriteFile("big", want);
  Drain();
  const uint64_t gets = store_->gets();
  for (int i = 0; i < 3; ++i) {
    const std::string more = RandomBytes(1000 + i, 402 + i);
    auto h = OpenH(ino);
    ASSERT_TRUE(h);
    WriteAt(h.get(), want.size(), more);
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
    want += more;
    Drain();
  }
  EXPECT_EQ(store_->gets(), gets + 3);
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
  Remount();
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
}

}  // namespace
}  // namespace wavefs
