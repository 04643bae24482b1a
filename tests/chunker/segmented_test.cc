// Chunk formats 2 and 3 (segmented AEAD, docs/format.md): round trips, the
// object layout, range opens, tamper detection per segment, and frozen golden
// vectors made by independent implementations (format2_reference.py,
// format3_reference.py).
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sodium.h>

#include <array>
#include <string>
#include <vector>

#include "chunker/crypto.h"
#include "chunker/types.h"
#include "chunker_test_util.h"

namespace wavefs {
namespace {

using chunker_test::GoldenPattern;
using chunker_test::GoldenSecret;
using chunker_test::RandomBytes;

constexpr ChunkFormat kV2 = ChunkFormat::kSegmented;
constexpr ChunkFormat kV3 = ChunkFormat::kSegmentedAes;
constexpr ChunkFormat kV4 = ChunkFormat::kTagAddressed;

std::vector<uint8_t> SealIn(ChunkFormat format,
                            const std::vector<uint8_t>& plaintext,
                            ChunkRef* ref) {
  std::vector<uint8_t> buf(plaintext);
  buf.resize(CiphertextSize(format, plaintext.size()));
  *ref = SealChunk(GoldenSecret(), format, buf.data(), plaintext.size());
  return buf;
}

// The layout tests run on both segmented formats.
class SegmentedTest : public ::testing::TestWithParam<ChunkFormat> {
 protected:
  void SetUp() override { ASSERT_TRUE(InitCrypto().ok()); }
  ChunkFormat format() const { return GetParam(); }
  std::vector<uint8_t> Seal2(const std::vector<uint8_t>& plaintext,
                             ChunkRef* ref) const {
    return SealIn(format(), plaintext, ref);
  }
};

INSTANTIATE_TEST_SUITE_P(Formats, SegmentedTest,
                         ::testing::Values(kV2, kV3, kV4),
                         [](const auto& info) {
                           return "Format" +
                                  std::to_string(static_cast<int>(info.param));
                         });

class GoldenTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(InitCrypto().ok()); }
};

// The object bytes of `range`, as a store range read returns them.
std::vector<uint8_t> Slice(const std::vector<uint8_t>& object,
                           const SegmentRange& range) {
  return std::vector<uint8_t>(object.begin() + range.ct_offset,
                              object.begin() + range.ct_offset + range.ct_len);
}

TEST(SegmentSizes, CiphertextSizeAddsOneTagPerSegment) {
  EXPECT_EQ(CiphertextSize(kV2, 1), 17u);
  EXPECT_EQ(CiphertextSize(kV2, 65536), 65552u);
  EXPECT_EQ(CiphertextSize(kV2, 65537), 65537u + 32);
  EXPECT_EQ(CiphertextSize(kV2, kChunkSize), kChunkSize + 64 * 16);
  EXPECT_EQ(CiphertextSize(kV4, kChunkSize), kChunkSize + 1024 + 32);
  EXPECT_EQ(CiphertextSize(kV4, 1), 17u + 32);
  EXPECT_EQ(kMaxCiphertextSize, kChunkSize + 1024 + 32);
  EXPECT_EQ(CiphertextSize(ChunkFormat::kWhole, kChunkSize), kChunkSize + 16);
}

TEST(SegmentSizes, SegmentsCoveringRoundsOutToWholeSegments) {
  // Inside one segment.
  SegmentRange r = SegmentsCovering(kChunkSize, 100, 200);
  EXPECT_EQ(r.first, 0u);
  EXPECT_EQ(r.count, 1u);
  EXPECT_EQ(r.ct_offset, 0u);
  EXPECT_EQ(r.pt_offset, 0u);
  EXPECT_EQ(r.pt_len, 65536u);
  EXPECT_EQ(r.ct_len, 65552u);
  // Across a boundary: segments 1 and 2.
  r = SegmentsCovering(kChunkSize, 2 * 65536 - 1, 2);
  EXPECT_EQ(r.first, 1u);
  EXPECT_EQ(r.count, 2u);
  EXPECT_EQ(r.ct_offset, 65552u);
  EXPECT_EQ(r.pt_offset, 65536u);
  EXPECT_EQ(r.pt_len, 2 * 65536u);
  EXPECT_EQ(r.ct_len, 2 * 65552u);
  // A short last segment ends where the object ends.
  const uint64_t len = 3 * 65536 + 10;
  r = SegmentsCovering(len, len - 1, 1);
  EXPECT_EQ(r.first, 3u);
  EXPECT_EQ(r.pt_len, 10u);
  EXPECT_EQ(r.ct_offset + r.ct_len, CiphertextSize(kV2, len));
  // The whole chunk.
  r = SegmentsCovering(kChunkSize, 0, kChunkSize);
  EXPECT_EQ(r.count, 64u);
  EXPECT_EQ(r.ct_len, CiphertextSize(kV3, kChunkSize));
}

TEST_P(SegmentedTest, RoundTripAtEverySegmentEdge) {
  for (size_t len :
       {size_t{1}, size_t{65535}, size_t{65536}, size_t{65537},
        size_t{3 * 65536 + 5}, size_t{kChunkSize - 1}, size_t{kChunkSize}}) {
    SCOPED_TRACE(len);
    const auto plaintext = RandomBytes(len, 3);
    ChunkRef ref;
    auto buf = Seal2(plaintext, &ref);
    EXPECT_FALSE(ref.hole);
    EXPECT_EQ(ref.length, len);
    Status st = OpenChunk(ref, format(), buf.data(), buf.size(), true);
    ASSERT_TRUE(st.ok()) << st.ToString();
    buf.resize(len);
    EXPECT_TRUE(buf == plaintext);
  }
}

// The object is each segment sealed on its own (libsodium's combined API,
// out of place) with nonce u64le(index) || zeros: checks the in-place
// moves of SealChunk against an independent path.
TEST_F(GoldenTest, Format2ObjectIsSegmentsSealedBackToBack) {
  const size_t len = 5 * 65536 + 777;
  const auto plaintext = RandomBytes(len, 9);
  ChunkRef ref;
  const auto object = SealIn(kV2, plaintext, &ref);
  std::vector<uint8_t> expected;
  for (uint64_t i = 0; i * 65536 < len; ++i) {
    const size_t seg = std::min<size_t>(65536, len - i * 65536);
    std::array<unsigned char, 24> nonce{};
    for (int b = 0; b < 8; ++b)
      nonce[b] = static_cast<unsigned char>(i >> (8 * b));
    std::vector<uint8_t> sealed(seg + 16);
    unsigned long long out_len = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(
        sealed.data(), &out_len, plaintext.data() + i * 65536, seg, nullptr, 0,
        nullptr, nonce.data(), ref.key.data());
    expected.insert(expected.end(), sealed.begin(), sealed.end());
  }
  EXPECT_TRUE(object == expected);
  Address address{};
  crypto_generichash(address.data(), address.size(), object.data(),
                     object.size(), nullptr, 0);
  EXPECT_EQ(address, ref.address);
}

TEST_P(SegmentedTest, OpenSegmentsReturnsExactlyTheCoveredPlaintext) {
  const size_t len = kChunkSize - 12345;
  const auto plaintext = RandomBytes(len, 4);
  ChunkRef ref;
  const auto object = Seal2(plaintext, &ref);
  struct Want {
    uint64_t offset, n;
  };
  for (Want w :
       {Want{0, 1}, Want{65535, 2}, Want{1 << 20, 1 << 20}, Want{len - 1, 1},
        Want{len - 70000, 70000}, Want{0, len}, Want{123456, 4096}}) {
    SCOPED_TRACE(std::to_string(w.offset) + "+" + std::to_string(w.n));
    const SegmentRange r = SegmentsCovering(len, w.offset, w.n);
    auto buf = Slice(object, r);
    Status st = OpenSegments(ref, format(), r, buf.data(), buf.size());
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_LE(w.offset + w.n, r.pt_offset + r.pt_len);
    ASSERT_GE(w.offset, r.pt_offset);
    EXPECT_TRUE(std::equal(plaintext.begin() + r.pt_offset,
                           plaintext.begin() + r.pt_offset + r.pt_len,
                           buf.begin()));
  }
}

TEST_P(SegmentedTest, FlippedBitFailsOnlyTheSegmentHoldingIt) {
  const size_t len = 4 * 65536;
  const auto plaintext = RandomBytes(len, 5);
  ChunkRef ref;
  auto object = Seal2(plaintext, &ref);
  object[2 * 65552 + 100] ^= 1;  // inside segment 2
  // Segments 0-1 still open.
  SegmentRange good = SegmentsCovering(len, 0, 2 * 65536);
  auto buf = Slice(object, good);
  EXPECT_TRUE(OpenSegments(ref, format(), good, buf.data(), buf.size()).ok());
  // Any range touching segment 2 is corrupt, and leaves nothing behind.
  SegmentRange bad = SegmentsCovering(len, 65536, 2 * 65536);
  buf = Slice(object, bad);
  Status st = OpenSegments(ref, format(), bad, buf.data(), buf.size());
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("segment 2"), std::string::npos) << st.message();
  EXPECT_TRUE(IsAllZero(buf));
  // The whole object too.
  st = OpenChunk(ref, format(), object.data(), object.size(), false);
  EXPECT_EQ(st.code(), Code::kCorrupt);
}

TEST_P(SegmentedTest, SwappedOrShortSegmentsFail) {
  const size_t len = 3 * 65536;
  ChunkRef ref;
  const auto object = Seal2(RandomBytes(len, 6), &ref);
  // Segment 1's bytes presented as segment 0: the nonce differs.
  SegmentRange r0 = SegmentsCovering(len, 0, 1);
  SegmentRange r1 = SegmentsCovering(len, 65536, 1);
  auto buf = Slice(object, r1);
  EXPECT_EQ(OpenSegments(ref, format(), r0, buf.data(), buf.size()).code(),
            Code::kCorrupt);
  // A store that returns fewer bytes than asked for.
  buf = Slice(object, r0);
  buf.pop_back();
  EXPECT_EQ(OpenSegments(ref, format(), r0, buf.data(), buf.size()).code(),
            Code::kCorrupt);
  // A whole object of the wrong size.
  auto whole = object;
  whole.pop_back();
  EXPECT_EQ(OpenChunk(ref, format(), whole.data(), whole.size(), false).code(),
            Code::kCorrupt);
  // Another chunk's key.
  ChunkRef other;
  (void)Seal2(RandomBytes(len, 7), &other);
  ChunkRef wrong = ref;
  wrong.key = other.key;
  buf = Slice(object, r0);
  EXPECT_EQ(OpenSegments(wrong, format(), r0, buf.data(), buf.size()).code(),
            Code::kCorrupt);
}

TEST_P(SegmentedTest, HoleStaysAHole) {
  std::vector<uint8_t> buf(CiphertextSize(format(), 200000), 0);
  const ChunkRef ref = SealChunk(GoldenSecret(), format(), buf.data(), 200000);
  EXPECT_TRUE(ref.hole);
  EXPECT_TRUE(IsAllZero(buf));
}

// Frozen golden vectors, never edit: a failure here is a format change.
struct Vector {
  const char* name;
  std::vector<uint8_t> plaintext;
  const char* key_hex;
  const char* address_hex;
  const char* object_hex;  // short ones only
};

void CheckVectors(ChunkFormat format, const std::vector<Vector>& vectors) {
  for (const Vector& v : vectors) {
    SCOPED_TRACE(v.name);
    ChunkRef ref;
    auto object = SealIn(format, v.plaintext, &ref);
    EXPECT_EQ(ToHex(ref.key), v.key_hex);
    EXPECT_EQ(ToHex(ref.address), v.address_hex);
    if (v.object_hex != nullptr) {
      EXPECT_EQ(ToHex(object), v.object_hex);
    }
    Status st = OpenChunk(ref, format, object.data(), object.size(), true);
    ASSERT_TRUE(st.ok()) << st.ToString();
    object.resize(v.plaintext.size());
    EXPECT_TRUE(object == v.plaintext);
  }
}

// Produced by tests/chunker/format2_reference.py (Python hashlib BLAKE2b, a
// pure-Python HChaCha20 and the `cryptography` package's IETF
// ChaCha20-Poly1305).
TEST_F(GoldenTest, Format2) {
  const std::string text = "wavefs golden vector 1";
  CheckVectors(
      kV2,
      {
          {"one segment", std::vector<uint8_t>(text.begin(), text.end()),
           "8799870a3acf162ea9f9821196889ab0eb5a7480f29cabf14c5cc2c7bb059f8c",
           "0ecc1c33b849793f3fe7da787fd4b86d96f884f3560b9d505b7a8f723bab99a2",
           "55e110d63cc9071d8342e5ae4981f7f6d44481725727ea080adb316c68a308230f"
           "f5b1426697"},
          {"three segments", GoldenPattern(2 * 65536 + 100),
           "8430ca52179c0dc3e8f822df309def4d7b005fa67b083d576f5f1bbdb59bac46",
           "a267b013ffb0e1fc3e495d10f04285482ed5a06ee95023a58abb1ecbfe7e62ae",
           nullptr},
          {"4 MiB pattern", GoldenPattern(kChunkSize),
           "c6ac4eec100502de9869b58ca2f44b59c38ca361c0c37ae9fe01573bd56a9e49",
           "db8d336ca8581e7e4bd55f32f16b3b542ba7bae585eecc27fe8c30971a8225fd",
           nullptr},
      });
}

// Produced by tests/chunker/format3_reference.py (Python hmac and hashlib,
// the `cryptography` package's AESGCM); the one-segment vector was also
// checked with Node.js's crypto module.
TEST_F(GoldenTest, Format3) {
  const std::string text = "wavefs golden vector 1";
  CheckVectors(
      kV3,
      {
          {"one segment", std::vector<uint8_t>(text.begin(), text.end()),
           "61692e296fc5a23518d8c9ef06a869b3c5edccb447d49cd62dd6623e2e51ef32",
           "d7add16d1dbf673f1494a641f6eb92cf698aba5808167ee2107a40ed38a89079",
           "964245faff12651d021a5b3cc33843f3fa06dd43e71b80ddc159e3104db9049d83"
           "ff3553b1b2"},
          {"three segments", GoldenPattern(2 * 65536 + 100),
           "2befff5e1bafa4ced7362f271c2d5c5a036a536a1895cd13f656dbb9d622ecaa",
           "1be8052468ee3ba128f8daa6e50b2ef77fe38a06c552249258e9c1c0cd9e1eb7",
           nullptr},
          {"4 MiB pattern", GoldenPattern(kChunkSize),
           "a888efcbf884595fb700505b103373c299553f0ce3f04f794d68b8cc23db45d0",
           "f801d76dcaa3c7cf6e09083526f54416ada5315f46197dd5789d9129b4ed09ca",
           nullptr},
      });
}

// The format-3 object is each segment sealed on its own by OpenSSL's
// one-shot-per-segment path (a fresh context, out of place): checks the
// in-place moves and the reused context of SealChunk.
TEST_F(GoldenTest, Format3ObjectIsSegmentsSealedBackToBack) {
  const size_t len = 5 * 65536 + 777;
  const auto plaintext = RandomBytes(len, 9);
  ChunkRef ref;
  const auto object = SealIn(kV3, plaintext, &ref);
  std::vector<uint8_t> expected;
  for (uint64_t i = 0; i * 65536 < len; ++i) {
    const int seg = static_cast<int>(std::min<size_t>(65536, len - i * 65536));
    std::array<unsigned char, 12> nonce{};
    for (int b = 0; b < 8; ++b)
      nonce[b] = static_cast<unsigned char>(i >> (8 * b));
    std::vector<uint8_t> sealed(seg + 16);
    EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
    int out = 0;
    ASSERT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr,
                                 ref.key.data(), nonce.data()),
              1);
    ASSERT_EQ(EVP_EncryptUpdate(ctx, sealed.data(), &out,
                                plaintext.data() + i * 65536, seg),
              1);
    ASSERT_EQ(EVP_EncryptFinal_ex(ctx, sealed.data() + out, &out), 1);
    ASSERT_EQ(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16,
                                  sealed.data() + seg),
              1);
    EVP_CIPHER_CTX_free(ctx);
    expected.insert(expected.end(), sealed.begin(), sealed.end());
  }
  EXPECT_TRUE(object == expected);
  Address address{};
  unsigned int n = 0;
  ASSERT_EQ(EVP_Digest(object.data(), object.size(), address.data(), &n,
                       EVP_sha256(), nullptr),
            1);
  EXPECT_EQ(address, ref.address);
  EXPECT_EQ(AddressOf(kV3, object), ref.address);
  EXPECT_NE(AddressOf(kV2, object), ref.address);
}

// Produced by tests/chunker/format4_reference.py (the `cryptography`
// package's HKDF and AESGCM, Python's hashlib).
TEST_F(GoldenTest, Format4) {
  const std::string text = "wavefs golden vector 1";
  CheckVectors(
      kV4,
      {
          {"one segment", std::vector<uint8_t>(text.begin(), text.end()),
           "9bb2902c02733406399409092bc37f12ec258dc31dbdf21acb649487fc571661",
           "0d8c8587a33032cc23466441259502b804c05e10edf8e7ec5f9342723aee3a64",
           "b67d669aac53676b453c400ac7423db0eaaf80ac3f213b85d23835860a4fb7a9"
           "628a8ce76380e2154622d3326aa2570339e02799c5568fb6229899f45c528ce5"
           "2c5311138307"},
          {"three segments", GoldenPattern(2 * 65536 + 100),
           "086639e1645261623b936fb96f4b14890194c81e9e608103855408708360eb58",
           "758dacd8d98ab5670a5acf42374278db96431adfe2ff9802bad723e0b673333a",
           nullptr},
          {"4 MiB pattern", GoldenPattern(kChunkSize),
           "636a8730ad50658ad570be8dc2825e34b59b48b7ba679361d75d7b9952799d62",
           "8a7d1132137a139ee3302d0b47359fc9ccf26dfd8943d6c9bfba5056564dd0c6",
           nullptr},
      });
}

// What a check of a format-4 object without its key sees, and what only
// the key sees (docs/format.md, 2d).
TEST_F(GoldenTest, Format4KeylessCheckSeesSizeTagsAndTrailer) {
  const size_t len = 3 * 65536 + 5000;
  const auto plaintext = RandomBytes(len, 21);
  ChunkRef ref;
  const auto object = SealIn(kV4, plaintext, &ref);
  ASSERT_EQ(object.size(), CiphertextSize(kV4, len));
  ASSERT_EQ(object.size(), CiphertextSize(kV3, len) + 32);
  EXPECT_EQ(AddressOf(kV4, object), ref.address);
  // The segments are format 3's under format 4's key: the trailer is all
  // that follows them.
  ChunkRef as3 = ref;
  auto segments = std::vector<uint8_t>(object.begin(), object.end() - 32);
  ASSERT_TRUE(
      OpenChunk(as3, kV3, segments.data(), segments.size(), false).ok());
  segments.resize(len);
  EXPECT_TRUE(segments == plaintext);

  auto damaged = [&](auto&& change) {
    auto copy = object;
    change(copy);
    return copy;
  };
  const size_t tag1 = 2 * (65536 + 16) - 16;  // segment 1's tag
  const std::vector<std::pair<const char*, std::vector<uint8_t>>> seen = {
      {"trailer byte", damaged([](auto& o) { o[o.size() - 1] ^= 1; })},
      {"a tag", damaged([&](auto& o) { o[tag1] ^= 0x80; })},
      {"one byte short", damaged([](auto& o) { o.pop_back(); })},
      {"one byte long", damaged([](auto& o) { o.push_back(0); })},
      {"last 4 KiB zeroed",
       damaged([](auto& o) { std::fill(o.end() - 4096, o.end(), 0); })},
  };
  for (const auto& [what, bad] : seen) {
    SCOPED_TRACE(what);
    EXPECT_NE(AddressOf(kV4, bad), ref.address);
    auto buf = bad;
    EXPECT_EQ(OpenChunk(ref, kV4, buf.data(), buf.size(), true).code(),
              Code::kCorrupt);
  }
  // A change inside a segment's ciphertext keeps the address; the key's
  // tag catches it, and nothing of the chunk is left readable.
  auto body = damaged([](auto& o) { o[70000] ^= 1; });
  EXPECT_EQ(AddressOf(kV4, body), ref.address);
  EXPECT_EQ(OpenChunk(ref, kV4, body.data(), body.size(), true).code(),
            Code::kCorrupt);
  EXPECT_TRUE(IsAllZero(body));
  // Sizes no chunk seals to have no address.
  for (size_t size :
       {size_t{0}, size_t{47}, size_t{48}, size_t{65552 + 32 + 16},
        CiphertextSize(kV4, kChunkSize) + 1}) {
    EXPECT_EQ(AddressOf(kV4, std::vector<uint8_t>(size, 7)), Address{}) << size;
  }
  EXPECT_NE(AddressOf(kV4, std::vector<uint8_t>(49, 7)), Address{});
}

// A store of one format never accepts another's object under its address.
TEST_F(GoldenTest, FormatsGiveUnrelatedKeysAndAddresses) {
  const auto plaintext = RandomBytes(3 * 65536, 12);
  ChunkRef r2, r3;
  auto o2 = SealIn(kV2, plaintext, &r2);
  auto o3 = SealIn(kV3, plaintext, &r3);
  EXPECT_NE(r2.key, r3.key);
  EXPECT_NE(r2.address, r3.address);
  EXPECT_EQ(o2.size(), o3.size());
  ChunkRef r4;
  auto o4 = SealIn(kV4, plaintext, &r4);
  EXPECT_NE(r4.key, r3.key);
  EXPECT_NE(r4.address, r3.address);
  EXPECT_NE(AddressOf(kV4, o3), r3.address);
  auto o3as4 = o3;
  o3as4.resize(o4.size());
  EXPECT_EQ(OpenChunk(r4, kV4, o3as4.data(), o3as4.size(), false).code(),
            Code::kCorrupt);
  o3as4 = o3;
  o3as4.resize(o4.size());
  EXPECT_EQ(OpenChunk(r3, kV4, o3as4.data(), o3as4.size(), true).code(),
            Code::kCorrupt);
  // Opening one format's object as the other fails authentication.
  EXPECT_EQ(OpenChunk(r2, kV3, o2.data(), o2.size(), false).code(),
            Code::kCorrupt);
  EXPECT_EQ(OpenChunk(r3, kV2, o3.data(), o3.size(), false).code(),
            Code::kCorrupt);
}

}  // namespace
}  // namespace wavefs
