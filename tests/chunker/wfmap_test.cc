// The .wfmap encoding (docs/format.md, section 10): round trips, and every
// way a damaged file is refused before any chunk is fetched.
#include "chunker/wfmap.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <algorithm>
#include <string>

#include "chunker/crypto.h"

namespace wavefs {
namespace {

WfMap Sample() {
  WfMap w;
  w.chunk_format = ChunkFormat::kSegmented;
  for (size_t i = 0; i < w.store_id.size(); ++i) w.store_id[i] = i;
  for (size_t i = 0; i < w.share_id.size(); ++i) w.share_id[i] = 0xf0 + i;
  w.created_unix = 1764500000;
  w.map.size = 3 * kChunkSize + 5;
  ChunkRef data;
  data.length = kChunkSize;
  data.address.fill(0xaa);
  data.key.fill(0xbb);
  ChunkRef hole;
  hole.hole = true;
  hole.length = kChunkSize;
  ChunkRef tail = data;
  tail.length = 5;
  tail.address.fill(0xcc);
  w.map.chunks = {{0, data}, {1, hole}, {3, tail}};
  return w;
}

class WfmapTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(InitCrypto().ok()); }
};

TEST_F(WfmapTest, RoundTrip) {
  const WfMap w = Sample();
  const std::string bytes = EncodeWfmap(w);
  EXPECT_EQ(bytes.size(), kWfmapHeaderSize + EncodeDataMap(w.map).size() +
                              kWfmapChecksumSize);
  auto back = DecodeWfmap(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, w);
  EXPECT_EQ(EncodeWfmap(*back), bytes);  // canonical
}

TEST_F(WfmapTest, RoundTripFormat1AndEmptyFile) {
  WfMap w = Sample();
  w.chunk_format = ChunkFormat::kWhole;
  w.map = DataMap{};
  auto back = DecodeWfmap(EncodeWfmap(w));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, w);
}

TEST_F(WfmapTest, LargeMapRoundTrips) {
  // 5 GiB: 1280 entries, far over the 64 KiB an xattr can carry.
  WfMap w = Sample();
  w.map.size = 5ull << 30;
  w.map.chunks.clear();
  for (uint64_t i = 0; i < 1280; ++i) {
    ChunkRef r;
    r.length = kChunkSize;
    r.address.fill(static_cast<uint8_t>(i));
    r.address[1] = static_cast<uint8_t>(i >> 8);
    r.key.fill(1);
    w.map.chunks.emplace_back(i, r);
  }
  const std::string bytes = EncodeWfmap(w);
  EXPECT_GT(bytes.size(), 64u << 10);
  auto back = DecodeWfmap(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, w);
  EXPECT_EQ(DataAddresses(back->map).size(), 1280u);
}

TEST_F(WfmapTest, EveryFlippedByteIsCaught) {
  const std::string good = EncodeWfmap(Sample());
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x01;
    auto r = DecodeWfmap(bad);
    EXPECT_FALSE(r.ok()) << "flipped byte " << i << " went unnoticed";
  }
}

TEST_F(WfmapTest, ChecksumMismatchIsNamed) {
  std::string bad = EncodeWfmap(Sample());
  bad[kWfmapHeaderSize + 30] ^= 0x40;  // inside the data map
  auto r = DecodeWfmap(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("checksum mismatch"), std::string::npos)
      << r.status().message();
}

TEST_F(WfmapTest, TruncatedAtEveryLengthIsRefused) {
  const std::string good = EncodeWfmap(Sample());
  for (size_t n = 0; n < good.size(); ++n) {
    auto r = DecodeWfmap(std::string_view(good).substr(0, n));
    ASSERT_FALSE(r.ok()) << "accepted " << n << " of " << good.size();
    EXPECT_EQ(r.status().code(), Code::kCorrupt);
  }
  auto r = DecodeWfmap(good.substr(0, good.size() - 1));
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos)
      << r.status().message();
}

TEST_F(WfmapTest, TrailingBytesAreRefused) {
  auto r = DecodeWfmap(EncodeWfmap(Sample()) + "x");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("trailing"), std::string::npos)
      << r.status().message();
}

TEST_F(WfmapTest, WrongMagicIsNamed) {
  std::string bad = EncodeWfmap(Sample());
  bad[1] = 'X';
  auto r = DecodeWfmap(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad magic"), std::string::npos);
  // A raw data map (section 6) is not a .wfmap either.
  r = DecodeWfmap(EncodeDataMap(Sample().map));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("bad magic"), std::string::npos);
}

// Re-seals a modified body so that only the field under test is wrong.
std::string Reseal(std::string bytes) {
  bytes.resize(bytes.size() - kWfmapChecksumSize);
  std::array<uint8_t, 32> sum{};
  crypto_generichash(sum.data(), sum.size(),
                     reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size(), nullptr, 0);
  bytes.append(reinterpret_cast<const char*>(sum.data()), sum.size());
  return bytes;
}

TEST_F(WfmapTest, UnknownVersionIsNamed) {
  std::string bad = EncodeWfmap(Sample());
  bad[8] = 2;
  auto r = DecodeWfmap(Reseal(bad));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unknown version 2"), std::string::npos)
      << r.status().message();
}

TEST_F(WfmapTest, UnknownChunkFormatOrSizeIsNotSupported) {
  std::string bad = EncodeWfmap(Sample());
  bad[10] = 5;  // formats 1 to 4 exist
  auto r = DecodeWfmap(Reseal(bad));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotSupported);
  bad[10] = 3;
  r = DecodeWfmap(Reseal(bad));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->chunk_format, ChunkFormat::kSegmentedAes);
  bad = EncodeWfmap(Sample());
  bad[14] = 0x10;  // chunk size 4 MiB + 1 MiB
  r = DecodeWfmap(Reseal(bad));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotSupported);
}

TEST_F(WfmapTest, SizeMustMatchTheDataMap) {
  std::string bad = EncodeWfmap(Sample());
  bad[56] ^= 1;  // the header's file size
  auto r = DecodeWfmap(Reseal(bad));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("differs"), std::string::npos)
      << r.status().message();
}

TEST_F(WfmapTest, DataAddressesSkipHolesAndDuplicates) {
  WfMap w = Sample();
  w.map.chunks.emplace_back(2, w.map.chunks[0].second);  // same as chunk 0
  std::sort(w.map.chunks.begin(), w.map.chunks.end(),
            [](auto& a, auto& b) { return a.first < b.first; });
  const auto a = DataAddresses(w.map);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0], w.map.chunks[0].second.address);
}

TEST_F(WfmapTest, IdHex) {
  ShareId id{};
  id[0] = 0xab;
  id[15] = 0x01;
  const std::string hex = IdToHex(id);
  EXPECT_EQ(hex, "ab000000000000000000000000000001");
  auto back = IdFromHex(hex);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, id);
  EXPECT_FALSE(IdFromHex("ab").ok());
  EXPECT_FALSE(IdFromHex(std::string(32, 'g')).ok());
}

}  // namespace
}  // namespace wavefs

namespace wavefs {
namespace {

// The example of docs/format.md, section 7b: its first 96 bytes are frozen.
TEST(WfmapGolden, GoldenEmptyFile) {
  WfMap w;
  w.chunk_format = ChunkFormat::kSegmented;
  for (size_t i = 0; i < 16; ++i) w.store_id[i] = i;
  for (size_t i = 0; i < 16; ++i) w.share_id[i] = 0xf0 + i;
  w.created_unix = 1764500000;
  const std::string bytes = EncodeWfmap(w);
  ASSERT_EQ(bytes.size(), 128u);
  EXPECT_EQ(ToHex({reinterpret_cast<const uint8_t*>(bytes.data()), 96}),
            "8957464d41500d0a0100020000004000"  // magic v1 format 2 4 MiB
            "000102030405060708090a0b0c0d0e0f"  // store id
            "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"  // share id
            "20222c6900000000"                  // created
            "0000000000000000"                  // file size 0
            "1800000000000000"                  // map length 24
            "5746444d01000000"                  // data map magic v1
            "00000000000000000000000000000000"  // size 0, 0 entries
  );
}

}  // namespace
}  // namespace wavefs
