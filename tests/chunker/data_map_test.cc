// Data map and chunk ref encodings: round trips, every rejection the decoder
// promises, truncation and random-input robustness, and the frozen golden
// encodings of version 1 (docs/format.md).
#include "chunker/data_map.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "chunker/types.h"

namespace wavefs {
namespace {

// Builds little-endian test inputs by hand, independently of the encoder.
class Bytes {
 public:
  Bytes& U8(uint8_t v) { return Le(v, 1); }
  Bytes& U16(uint16_t v) { return Le(v, 2); }
  Bytes& U32(uint32_t v) { return Le(v, 4); }
  Bytes& U64(uint64_t v) { return Le(v, 8); }
  Bytes& Fill(uint8_t v, size_t n) {
    s_.append(n, static_cast<char>(v));
    return *this;
  }
  Bytes& Header(uint64_t size, uint64_t count) {
    return U32(kDataMapMagic).U16(1).U16(0).U64(size).U64(count);
  }
  Bytes& DataEntry(uint64_t index, uint32_t length) {
    return U64(index).U8(0).U32(length).Fill(0xaa, 32).Fill(0xbb, 32);
  }
  Bytes& HoleEntry(uint64_t index, uint32_t length) {
    return U64(index).U8(1).U32(length);
  }
  const std::string& str() const { return s_; }

 private:
  Bytes& Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s_.push_back(static_cast<char>(v >> (8 * i)));
    return *this;
  }
  std::string s_;
};

std::string Hex(const std::string& s) {
  return ToHex({reinterpret_cast<const uint8_t*>(s.data()), s.size()});
}

ChunkRef DataRef(uint32_t length, uint8_t address_base, uint8_t key_base) {
  ChunkRef ref;
  ref.length = length;
  for (size_t i = 0; i < 32; ++i) {
    ref.address[i] = static_cast<uint8_t>(address_base + i);
    ref.key[i] = static_cast<uint8_t>(key_base + i);
  }
  return ref;
}

ChunkRef HoleRef(uint32_t length) {
  ChunkRef ref;
  ref.hole = true;
  ref.length = length;
  return ref;
}

// The golden map: a full data chunk, a hole, a missing chunk (reads as
// zeros) and a short last data chunk.
DataMap GoldenMap() {
  DataMap map;
  map.size = 3 * kChunkSize + 100;
  map.chunks.emplace_back(0, DataRef(kChunkSize, 0xa0, 0xc0));
  map.chunks.emplace_back(1, HoleRef(kChunkSize));
  ChunkRef last;
  last.length = 100;
  for (size_t i = 0; i < 32; ++i) {
    last.address[i] = static_cast<uint8_t>(i);
    last.key[i] = static_cast<uint8_t>(0xff - i);
  }
  map.chunks.emplace_back(3, last);
  return map;
}

// Frozen: checked against an independent Python struct encoding. A change
// here is a format change (docs/format.md, "Changing the format").
constexpr const char* kGoldenMapHex =
    "5746444d010000006400c0000000000003000000000000000000000000000000"
    "0000004000a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9ba"
    "bbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9da"
    "dbdcdddedf010000000000000001000040000300000000000000006400000000"
    "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1fff"
    "fefdfcfbfaf9f8f7f6f5f4f3f2f1f0efeeedecebeae9e8e7e6e5e4e3e2e1e0";

constexpr const char* kGoldenDataRefHex =
    "010064000000000102030405060708090a0b0c0d0e0f101112131415161718191a1b"
    "1c1d1e1ffffefdfcfbfaf9f8f7f6f5f4f3f2f1f0efeeedecebeae9e8e7e6e5e4e3e2"
    "e1e0";

void ExpectCorrupt(const std::string& bytes, const std::string& message_part) {
  auto decoded = DecodeDataMap(bytes);
  ASSERT_FALSE(decoded.ok()) << "accepted " << Hex(bytes);
  EXPECT_EQ(decoded.status().code(), Code::kCorrupt);
  EXPECT_NE(decoded.status().message().find(message_part), std::string::npos)
      << decoded.status().message();
}

// --- data map: round trips and golden -------------------------------------

TEST(DataMapTest, EmptyMapRoundTrips) {
  for (uint64_t size : {uint64_t{0}, uint64_t{1}, 5 * kChunkSize}) {
    DataMap map;
    map.size = size;
    const std::string encoded = EncodeDataMap(map);
    EXPECT_EQ(encoded.size(), 24u);
    auto decoded = DecodeDataMap(encoded);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(*decoded, map);
  }
}

TEST(DataMapTest, MixedMapRoundTrips) {
  DataMap map = GoldenMap();
  auto decoded = DecodeDataMap(EncodeDataMap(map));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, map);
}

TEST(DataMapTest, LargeMapRoundTrips) {
  DataMap map;
  map.size = 1000 * kChunkSize - 7;
  for (uint64_t i = 0; i < 1000; i += (i % 3) + 1) {
    const uint32_t len = i == 999 ? kChunkSize - 7 : kChunkSize;
    map.chunks.emplace_back(
        i, i % 5 == 0 ? HoleRef(len) : DataRef(len, i & 0xff, i >> 2));
  }
  auto decoded = DecodeDataMap(EncodeDataMap(map));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, map);
}

TEST(DataMapTest, HugeSizeDoesNotOverflow) {
  DataMap map;
  map.size = UINT64_MAX;
  const uint64_t last = UINT64_MAX / kChunkSize;  // the last chunk's index
  map.chunks.emplace_back(last, DataRef(kChunkSize - 1, 1, 2));
  auto decoded = DecodeDataMap(EncodeDataMap(map));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, map);
  ExpectCorrupt(Bytes().Header(UINT64_MAX, 1).DataEntry(last + 1, 1).str(),
                "past the end");
}

TEST(DataMapTest, GoldenEncoding) {
  EXPECT_EQ(Hex(EncodeDataMap(GoldenMap())), kGoldenMapHex);
  // The hand-built layout agrees with the frozen bytes too.
  Bytes b;
  b.Header(3 * kChunkSize + 100, 3);
  b.U64(0).U8(0).U32(kChunkSize);
  for (int i = 0; i < 32; ++i) b.U8(0xa0 + i);
  for (int i = 0; i < 32; ++i) b.U8(0xc0 + i);
  b.HoleEntry(1, kChunkSize);
  b.U64(3).U8(0).U32(100);
  for (int i = 0; i < 32; ++i) b.U8(i);
  for (int i = 0; i < 32; ++i) b.U8(0xff - i);
  EXPECT_EQ(Hex(b.str()), kGoldenMapHex);
  auto decoded = DecodeDataMap(b.str());
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, GoldenMap());
}

// --- data map: rejections ---------------------------------------------------

TEST(DataMapTest, RejectsBadMagic) {
  std::string bytes = EncodeDataMap(GoldenMap());
  bytes[0] ^= 1;
  ExpectCorrupt(bytes, "bad magic");
  ExpectCorrupt(Bytes().U32(0).U16(1).U16(0).U64(0).U64(0).str(), "bad magic");
}

TEST(DataMapTest, RejectsUnknownVersion) {
  for (uint16_t version : {0, 2, 0xffff}) {
    ExpectCorrupt(
        Bytes().U32(kDataMapMagic).U16(version).U16(0).U64(0).U64(0).str(),
        "unknown version " + std::to_string(version));
  }
}

TEST(DataMapTest, RejectsUnknownFlags) {
  ExpectCorrupt(Bytes().U32(kDataMapMagic).U16(1).U16(1).U64(0).U64(0).str(),
                "unknown flags");
}

TEST(DataMapTest, RejectsTruncation) {
  ExpectCorrupt("", "truncated");
  ExpectCorrupt(Bytes().U32(kDataMapMagic).str(), "truncated");
  ExpectCorrupt(Bytes().Header(kChunkSize, 1).str(), "truncated");
  ExpectCorrupt(
      Bytes().Header(kChunkSize, 1).U64(0).U8(0).U32(1).Fill(0, 63).str(),
      "truncated");
}

TEST(DataMapTest, RejectsHugeCountWithoutAllocating) {
  ExpectCorrupt(Bytes().Header(UINT64_MAX, UINT64_MAX).str(), "truncated");
  ExpectCorrupt(
      Bytes().Header(UINT64_MAX, uint64_t{1} << 40).HoleEntry(0, 1).str(),
      "truncated");
}

TEST(DataMapTest, RejectsUnsortedIndexes) {
  ExpectCorrupt(
      Bytes().Header(4 * kChunkSize, 2).HoleEntry(2, 1).HoleEntry(1, 1).str(),
      "not sorted");
}

TEST(DataMapTest, RejectsDuplicateIndexes) {
  ExpectCorrupt(
      Bytes().Header(4 * kChunkSize, 2).DataEntry(2, 1).HoleEntry(2, 1).str(),
      "duplicate chunk index 2");
}

TEST(DataMapTest, RejectsIndexPastSize) {
  ExpectCorrupt(Bytes().Header(kChunkSize, 1).DataEntry(1, 1).str(),
                "past the end");
  ExpectCorrupt(Bytes().Header(kChunkSize + 1, 1).HoleEntry(2, 1).str(),
                "past the end");
  ExpectCorrupt(Bytes().Header(0, 1).HoleEntry(0, 1).str(), "past the end");
  // The last index is fine.
  EXPECT_TRUE(
      DecodeDataMap(Bytes().Header(kChunkSize + 1, 1).DataEntry(1, 1).str())
          .ok());
}

TEST(DataMapTest, RejectsLengthOverChunkSize) {
  ExpectCorrupt(
      Bytes().Header(kChunkSize, 1).DataEntry(0, kChunkSize + 1).str(),
      "exceeds the chunk size");
  ExpectCorrupt(
      Bytes().Header(kChunkSize, 1).HoleEntry(0, kChunkSize + 1).str(),
      "exceeds the chunk size");
  EXPECT_TRUE(DecodeDataMap(
                  Bytes().Header(kChunkSize, 1).DataEntry(0, kChunkSize).str())
                  .ok());
}

TEST(DataMapTest, RejectsZeroLengthDataChunk) {
  ExpectCorrupt(Bytes().Header(kChunkSize, 1).DataEntry(0, 0).str(),
                "data chunk has length 0");
}

TEST(DataMapTest, RejectsUnknownKind) {
  ExpectCorrupt(Bytes().Header(kChunkSize, 1).U64(0).U8(2).U32(1).str(),
                "unknown chunk kind 2");
}

TEST(DataMapTest, RejectsTrailingBytes) {
  std::string bytes = EncodeDataMap(GoldenMap());
  bytes.push_back('\0');
  ExpectCorrupt(bytes, "1 trailing bytes");
  ExpectCorrupt(Bytes().Header(0, 0).U8(0).str(), "trailing");
}

// --- data map: robustness ---------------------------------------------------

TEST(DataMapTest, EveryTruncationFailsCleanly) {
  const std::string full = EncodeDataMap(GoldenMap());
  for (size_t n = 0; n < full.size(); ++n) {
    auto decoded = DecodeDataMap(std::string_view(full).substr(0, n));
    ASSERT_FALSE(decoded.ok()) << "prefix of " << n << " bytes accepted";
    EXPECT_EQ(decoded.status().code(), Code::kCorrupt);
  }
}

// Any input that decodes must re-encode to the same bytes: the encoding is
// canonical, so no two encodings mean the same map.
void ExpectCanonicalIfAccepted(const std::string& bytes) {
  auto decoded = DecodeDataMap(bytes);
  if (decoded.ok()) {
    EXPECT_EQ(Hex(EncodeDataMap(*decoded)), Hex(bytes));
  } else {
    EXPECT_EQ(decoded.status().code(), Code::kCorrupt);
    EXPECT_FALSE(decoded.status().message().empty());
  }
}

TEST(DataMapTest, EveryBitFlipFailsOrIsCanonical) {
  const std::string full = EncodeDataMap(GoldenMap());
  for (size_t i = 0; i < full.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bytes = full;
      bytes[i] = static_cast<char>(bytes[i] ^ (1 << bit));
      ExpectCanonicalIfAccepted(bytes);
    }
  }
}

TEST(DataMapTest, RandomBytesNeverCrash) {
  std::mt19937_64 rng(20240601);
  const std::string valid = EncodeDataMap(GoldenMap());
  for (int round = 0; round < 20000; ++round) {
    std::string bytes;
    if (round % 2 == 0) {
      bytes.resize(rng() % 300);
      for (char& c : bytes) c = static_cast<char>(rng());
      // Half of these get a valid header prefix to reach the entry loop.
      if (round % 4 == 0 && bytes.size() >= 8) {
        bytes.replace(0, 8, valid, 0, 8);
      }
    } else {
      bytes = valid;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
      }
    }
    ExpectCanonicalIfAccepted(bytes);
  }
}

// --- chunk refs
// ---------------------------------------------------------------

TEST(ChunkRefTest, DataRefRoundTripsAndIsGolden) {
  ChunkRef ref;
  ref.length = 100;
  for (size_t i = 0; i < 32; ++i) {
    ref.address[i] = static_cast<uint8_t>(i);
    ref.key[i] = static_cast<uint8_t>(0xff - i);
  }
  const std::string encoded = EncodeChunkRef(ref);
  ASSERT_EQ(encoded.size(), kEncodedChunkRefSize);
  EXPECT_EQ(Hex(encoded), kGoldenDataRefHex);
  auto decoded = DecodeChunkRef(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, ref);
}

TEST(ChunkRefTest, HoleRefRoundTripsAndIsGolden) {
  const ChunkRef hole = HoleRef(kChunkSize);
  const std::string encoded = EncodeChunkRef(hole);
  ASSERT_EQ(encoded.size(), kEncodedChunkRefSize);
  EXPECT_EQ(Hex(encoded), "010100004000" + std::string(128, '0'));
  auto decoded = DecodeChunkRef(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, hole);
}

TEST(ChunkRefTest, FullLengthRoundTrips) {
  const ChunkRef ref = DataRef(kChunkSize, 7, 9);
  auto decoded = DecodeChunkRef(EncodeChunkRef(ref));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, ref);
}

void ExpectRefCorrupt(const std::string& bytes, const std::string& part) {
  auto decoded = DecodeChunkRef(bytes);
  ASSERT_FALSE(decoded.ok()) << "accepted " << Hex(bytes);
  EXPECT_EQ(decoded.status().code(), Code::kCorrupt);
  EXPECT_NE(decoded.status().message().find(part), std::string::npos)
      << decoded.status().message();
}

TEST(ChunkRefTest, RejectsMalformed) {
  const std::string good = EncodeChunkRef(DataRef(10, 1, 2));
  for (size_t n = 0; n < good.size(); ++n) {
    ExpectRefCorrupt(good.substr(0, n), "expected 70");
  }
  ExpectRefCorrupt(good + "x", "expected 70");
  ExpectRefCorrupt(Bytes().U8(2).U8(0).U32(1).Fill(1, 64).str(),
                   "unknown version 2");
  ExpectRefCorrupt(Bytes().U8(1).U8(7).U32(1).Fill(1, 64).str(),
                   "unknown chunk kind 7");
  ExpectRefCorrupt(Bytes().U8(1).U8(0).U32(kChunkSize + 1).Fill(1, 64).str(),
                   "exceeds the chunk size");
  ExpectRefCorrupt(Bytes().U8(1).U8(0).U32(0).Fill(1, 64).str(),
                   "data chunk has length 0");
  ExpectRefCorrupt(Bytes().U8(1).U8(1).U32(5).Fill(0, 63).U8(1).str(),
                   "hole carries");
}

TEST(ChunkRefTest, HoleEncodingIgnoresStrayAddress) {
  ChunkRef hole = HoleRef(3);
  hole.address[0] = 1;  // breaks the invariant; the encoding stays canonical
  auto decoded = DecodeChunkRef(EncodeChunkRef(hole));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, HoleRef(3));
}

TEST(ChunkRefTest, RandomBytesNeverCrash) {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 20000; ++round) {
    std::string bytes(kEncodedChunkRefSize, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    if (round % 2 == 0) bytes[0] = 1;
    if (round % 4 == 0) bytes[1] = static_cast<char>(rng() % 2);
    auto decoded = DecodeChunkRef(bytes);
    if (decoded.ok()) {
      EXPECT_EQ(EncodeChunkRef(*decoded), bytes);
    } else {
      EXPECT_EQ(decoded.status().code(), Code::kCorrupt);
    }
  }
}

}  // namespace
}  // namespace wavefs
