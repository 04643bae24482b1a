#include "chunker/crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace wavefs {
namespace {

static_assert(sizeof(ChunkKey) == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(kTagSize == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(sizeof(Address) == crypto_generichash_BYTES);
static_assert(sizeof(Secret) >= crypto_generichash_KEYBYTES_MIN &&
              sizeof(Secret) <= crypto_generichash_KEYBYTES_MAX);
static_assert(kChunkSize <= UINT32_MAX, "ChunkRef::length is a uint32_t");

// The nonce of segment i: i as a little-endian u64, then zeros (24 bytes
// for XChaCha20, the first 12 of them for AES-GCM). Format 1's single unit
// is "segment 0": an all-zero nonce. Every chunk is sealed under its own key,
// so a nonce never repeats under a key with a different plaintext.
using SegmentNonce =
    std::array<unsigned char, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES>;
SegmentNonce NonceOfSegment(uint64_t i) {
  SegmentNonce nonce{};
  for (int b = 0; b < 8; ++b)
    nonce[b] = static_cast<unsigned char>(i >> (8 * b));
  return nonce;
}

// OpenSSL only fails these calls when it cannot allocate: nothing sensible
// is left to do, and sealing must never produce a wrong object silently.
void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "wavefs: OpenSSL %s failed\n", what);
  std::abort();
}

// The AEAD that seals and opens the segments of one chunk under its key:
// XChaCha20-Poly1305 (libsodium) for formats 1 and 2, AES-256-GCM (OpenSSL
// EVP, which uses AES-NI and carry-less multiply where the CPU has them)
// for formats 3 and 4. Each unit is `len` bytes at `seg`, its tag right after.
class SegmentAead {
 public:
  SegmentAead(ChunkFormat format, const ChunkKey& key) : key_(key) {
    if (format != ChunkFormat::kSegmentedAes &&
        format != ChunkFormat::kTagAddressed)
      return;
    ctx_ = EVP_CIPHER_CTX_new();
    Check(ctx_ != nullptr, "EVP_CIPHER_CTX_new");
  }
  ~SegmentAead() { EVP_CIPHER_CTX_free(ctx_); }  // cleanses the key schedule
  SegmentAead(const SegmentAead&) = delete;
  SegmentAead& operator=(const SegmentAead&) = delete;

  void Seal(uint64_t index, uint8_t* seg, size_t len) {
    const SegmentNonce nonce = NonceOfSegment(index);
    if (ctx_ == nullptr) {
      // In place (c == m) is supported by libsodium: the stream cipher XORs
      // byte by byte and the MAC is computed over the ciphertext afterwards.
      crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
          seg, seg + len, nullptr, seg, len, nullptr, 0, nullptr, nonce.data(),
          key_.data());
      return;
    }
    int out = 0;
    Start(nonce, 1);
    Check(EVP_EncryptUpdate(ctx_, seg, &out, seg, static_cast<int>(len)) == 1,
          "AES-GCM encrypt");
    Check(EVP_EncryptFinal_ex(ctx_, seg + out, &out) == 1, "AES-GCM final");
    Check(EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_GET_TAG,
                              static_cast<int>(kTagSize), seg + len) == 1,
          "AES-GCM tag");
  }

  // True when the tag verifies; seg then holds the plaintext. On false seg
  // may hold unauthenticated bytes (AES-GCM decrypts before the tag check):
  // the caller wipes them.
  bool Open(uint64_t index, uint8_t* seg, size_t len) {
    const SegmentNonce nonce = NonceOfSegment(index);
    if (ctx_ == nullptr) {
      // libsodium checks the tag before it writes any plaintext.
      return crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
                 seg, nullptr, seg, len, seg + len, nullptr, 0, nonce.data(),
                 key_.data()) == 0;
    }
    int out = 0;
    Start(nonce, 0);
    Check(EVP_DecryptUpdate(ctx_, seg, &out, seg, static_cast<int>(len)) == 1,
          "AES-GCM decrypt");
    Check(EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_AEAD_SET_TAG,
                              static_cast<int>(kTagSize), seg + len) == 1,
          "AES-GCM tag");
    return EVP_DecryptFinal_ex(ctx_, seg + out, &out) == 1;
  }

 private:
  // Starts a unit: sealing (enc 1) or opening (enc 0). The cipher and key
  // are given on the first init only; later inits change just the nonce
  // (96 bits, GCM's default length) and keep the expanded key. An object
  // seals or opens, never both.
  void Start(const SegmentNonce& nonce, int enc) {
    const bool first = !started_;
    started_ = true;
    Check(EVP_CipherInit_ex(ctx_, first ? EVP_aes_256_gcm() : nullptr, nullptr,
                            first ? key_.data() : nullptr, nonce.data(),
                            enc) == 1,
          "AES-GCM init");
  }

  const ChunkKey& key_;
  EVP_CIPHER_CTX* ctx_ = nullptr;
  bool started_ = false;
};

// Wipes the whole buffer so no unauthenticated plaintext (or half-decrypted
// bytes) outlives a failed open, then reports `message` as corruption.
Status FailOpen(uint8_t* buf, size_t ct_len, Code code, std::string message) {
  sodium_memzero(buf, ct_len);
  return Status::Error(code, std::move(message));
}

void HmacSha256(std::span<const uint8_t> key, std::span<const uint8_t> message,
                uint8_t out[32]) {
  unsigned int len = 0;
  Check(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             message.data(), message.size(), out, &len) != nullptr &&
            len == 32,
        "HMAC-SHA-256");
}

// Format 4's labels (docs/format.md, 2d). Each is HKDF-Expand's `info`; the
// 0x01 after it is HKDF's block counter (one 32-byte block).
constexpr std::string_view kF4KeyInfo = "wavefs format 4 key";
constexpr std::string_view kF4CommitmentInfo = "wavefs format 4 commitment";
constexpr std::string_view kF4AddressLabel = "wavefs format 4 address";

// HKDF-Expand(prk, info, 32) = HMAC-SHA-256(prk, info || 0x01).
void ExpandOneBlock(const uint8_t prk[32], std::string_view info,
                    uint8_t out[32]) {
  uint8_t message[64];
  assert(info.size() < sizeof(message));
  std::memcpy(message, info.data(), info.size());
  message[info.size()] = 0x01;
  HmacSha256({prk, 32}, {message, info.size() + 1}, out);
  sodium_memzero(message, sizeof(message));
}

// Format 4's two secrets of a chunk: HKDF-Extract(salt = secret, IKM =
// plaintext) is HMAC-SHA-256(secret, plaintext), the one pass over the
// plaintext; the key and the commitment are expanded from it.
void DeriveFormat4(const Secret& secret, std::span<const uint8_t> plaintext,
                   ChunkKey* key, uint8_t commitment[kCommitmentSize]) {
  uint8_t prk[32];
  HmacSha256(secret, plaintext, prk);
  ExpandOneBlock(prk, kF4KeyInfo, key->data());
  if (commitment != nullptr) ExpandOneBlock(prk, kF4CommitmentInfo, commitment);
  sodium_memzero(prk, sizeof(prk));
}

// The plaintext length of a format-4 object of `size` bytes, or nullopt
// when no chunk seals to that size.
std::optional<uint64_t> Format4Length(uint64_t size) {
  if (size <= kCommitmentSize + kTagSize) return std::nullopt;
  const uint64_t body = size - kCommitmentSize;
  const uint64_t segments =
      body / kSealedSegmentSize + (body % kSealedSegmentSize != 0 ? 1 : 0);
  const uint64_t len = body - segments * kTagSize;
  if (len == 0 || len > kChunkSize ||
      CiphertextSize(ChunkFormat::kTagAddressed, len) != size)
    return std::nullopt;
  return len;
}

// address = SHA-256(label || u64le(length) || commitment || tag_0 || ...),
// read from the object itself: the tag of each segment and the trailer.
Address Format4Address(std::span<const uint8_t> object) {
  Address address{};  // all zeros: no chunk's address, for a bad size
  const auto len = Format4Length(object.size());
  if (!len) return address;
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  Check(md != nullptr && EVP_DigestInit_ex(md, EVP_sha256(), nullptr) == 1,
        "SHA-256 init");
  uint8_t le[8];
  for (int b = 0; b < 8; ++b) le[b] = static_cast<uint8_t>(*len >> (8 * b));
  bool ok =
      EVP_DigestUpdate(md, kF4AddressLabel.data(), kF4AddressLabel.size()) ==
          1 &&
      EVP_DigestUpdate(md, le, sizeof(le)) == 1 &&
      EVP_DigestUpdate(md, object.data() + object.size() - kCommitmentSize,
                       kCommitmentSize) == 1;
  const uint64_t n = SegmentCountFor(*len);
  for (uint64_t i = 0; ok && i < n; ++i) {
    const uint64_t seg_len =
        std::min<uint64_t>(kSegmentSize, *len - i * kSegmentSize);
    ok = EVP_DigestUpdate(md, object.data() + i * kSealedSegmentSize + seg_len,
                          kTagSize) == 1;
  }
  unsigned int out = 0;
  ok = ok && EVP_DigestFinal_ex(md, address.data(), &out) == 1 &&
       out == address.size();
  EVP_MD_CTX_free(md);
  Check(ok, "SHA-256");
  return address;
}

}  // namespace

Status InitCrypto() {
  if (sodium_init() < 0) {
    return Status::Error(Code::kIo, "libsodium failed to initialise");
  }
  return Status::Ok();
}

bool IsAllZero(std::span<const uint8_t> bytes) {
  // Not constant-time on purpose: whether a chunk is a hole is no secret
  // (holes are visible in the data map), and sodium_is_zero's byte-by-byte
  // loop cost 40% of the daemon's CPU while copying in.
  const uint8_t* p = bytes.data();
  size_t n = bytes.size();
  if (n == 0) return true;
  if (p[0] != 0) return false;
  // Every byte equals its successor and the first is zero.
  return std::memcmp(p, p + 1, n - 1) == 0;
}

ChunkKey DeriveChunkKey(ChunkFormat format, const Secret& secret,
                        std::span<const uint8_t> plaintext) {
  ChunkKey key{};
  if (format == ChunkFormat::kSegmentedAes) {
    HmacSha256(secret, plaintext, key.data());
    return key;
  }
  if (format == ChunkFormat::kTagAddressed) {
    DeriveFormat4(secret, plaintext, &key, nullptr);
    return key;
  }
  // Cannot fail: every length is within libsodium's bounds (static_asserts).
  crypto_generichash(key.data(), key.size(), plaintext.data(), plaintext.size(),
                     secret.data(), secret.size());
  return key;
}

Address AddressOf(ChunkFormat format, std::span<const uint8_t> ciphertext) {
  if (format == ChunkFormat::kTagAddressed) return Format4Address(ciphertext);
  Address address{};
  if (format == ChunkFormat::kSegmentedAes) {
    unsigned int len = 0;
    Check(EVP_Digest(ciphertext.data(), ciphertext.size(), address.data(), &len,
                     EVP_sha256(), nullptr) == 1 &&
              len == address.size(),
          "SHA-256");
    return address;
  }
  crypto_generichash(address.data(), address.size(), ciphertext.data(),
                     ciphertext.size(), nullptr, 0);
  return address;
}

ChunkRef SealChunk(const Secret& secret, ChunkFormat format, uint8_t* buf,
                   size_t len) {
  assert(len <= kChunkSize);
  ChunkRef ref;
  ref.length = static_cast<uint32_t>(len);
  if (IsAllZero({buf, len})) {
    ref.hole = true;
    return ref;
  }
  uint8_t commitment[kCommitmentSize];
  if (format == ChunkFormat::kTagAddressed)
    DeriveFormat4(secret, {buf, len}, &ref.key, commitment);
  else
    ref.key = DeriveChunkKey(format, secret, {buf, len});
  SegmentAead aead(format, ref.key);
  if (format == ChunkFormat::kWhole) {
    aead.Seal(0, buf, len);
  } else {
    // Last segment first: each moves up by 16 bytes per earlier segment to
    // make room for the tags, and moving from the end never overwrites
    // plaintext that is still to be sealed.
    for (uint64_t i = SegmentCountFor(len); i-- > 0;) {
      const size_t pt_off = i * kSegmentSize;
      const size_t seg_len = std::min(kSegmentSize, len - pt_off);
      uint8_t* seg = buf + i * kSealedSegmentSize;
      if (seg != buf + pt_off) std::memmove(seg, buf + pt_off, seg_len);
      aead.Seal(i, seg, seg_len);
    }
  }
  if (format == ChunkFormat::kTagAddressed) {
    std::memcpy(buf + CiphertextSize(ChunkFormat::kSegmentedAes, len),
                commitment, kCommitmentSize);
  }
  ref.address = AddressOf(format, {buf, CiphertextSize(format, len)});
  return ref;
}

SegmentRange SegmentsCovering(uint64_t chunk_len, uint64_t offset,
                              uint64_t len) {
  assert(len > 0 && offset + len <= chunk_len);
  SegmentRange r;
  r.first = offset / kSegmentSize;
  const uint64_t last = (offset + len - 1) / kSegmentSize;
  r.count = last - r.first + 1;
  r.ct_offset = r.first * kSealedSegmentSize;
  r.pt_offset = r.first * kSegmentSize;
  r.pt_len = std::min(chunk_len, (last + 1) * kSegmentSize) - r.pt_offset;
  r.ct_len = r.pt_len + r.count * kTagSize;
  return r;
}

Status OpenSegments(const ChunkRef& ref, ChunkFormat format,
                    const SegmentRange& range, uint8_t* buf, size_t ct_len) {
  if (ref.hole) {
    return FailOpen(buf, ct_len, Code::kInvalid,
                    "a hole chunk has no ciphertext to open");
  }
  if (ct_len != range.ct_len) {
    return FailOpen(buf, ct_len, Code::kCorrupt,
                    "chunk " + ToHex(ref.address) + " segments " +
                        std::to_string(range.first) + "+" +
                        std::to_string(range.count) + " have " +
                        std::to_string(ct_len) + " bytes, expected " +
                        std::to_string(range.ct_len));
  }
  SegmentAead aead(format, ref.key);
  size_t left = range.pt_len;
  for (uint64_t k = 0; k < range.count; ++k) {
    const size_t seg_len = std::min(kSegmentSize, left);
    uint8_t* seg = buf + k * kSealedSegmentSize;
    if (!aead.Open(range.first + k, seg, seg_len)) {
      return FailOpen(buf, ct_len, Code::kCorrupt,
                      "chunk " + ToHex(ref.address) + " segment " +
                          std::to_string(range.first + k) +
                          " failed authentication");
    }
    // Close the tag gaps: plaintext of segment k goes to k * kSegmentSize,
    // which is never past where its ciphertext was.
    if (k > 0) std::memmove(buf + k * kSegmentSize, seg, seg_len);
    left -= seg_len;
  }
  return Status::Ok();
}

Status OpenChunk(const ChunkRef& ref, ChunkFormat format, uint8_t* buf,
                 size_t ct_len, bool check_address) {
  if (ref.hole) {
    return FailOpen(buf, ct_len, Code::kInvalid,
                    "a hole chunk has no ciphertext to open");
  }
  const uint64_t expected = CiphertextSize(format, ref.length);
  if (ct_len != expected) {
    return FailOpen(buf, ct_len, Code::kCorrupt,
                    "chunk " + ToHex(ref.address) + " has " +
                        std::to_string(ct_len) + " bytes, expected " +
                        std::to_string(expected));
  }
  if (check_address && AddressOf(format, {buf, ct_len}) != ref.address) {
    return FailOpen(
        buf, ct_len, Code::kCorrupt,
        "chunk " + ToHex(ref.address) + " does not match its address");
  }
  if (IsSegmented(format)) {
    if (ref.length == 0) {
      return FailOpen(buf, ct_len, Code::kCorrupt,
                      "chunk " + ToHex(ref.address) + " has length 0");
    }
    // Format 4's trailer is no segment: the segments end before it.
    const size_t trailer =
        format == ChunkFormat::kTagAddressed ? kCommitmentSize : 0;
    Status st =
        OpenSegments(ref, format, SegmentsCovering(ref.length, 0, ref.length),
                     buf, ct_len - trailer);
    if (!st.ok() && trailer > 0) sodium_memzero(buf, ct_len);
    return st;
  }
  // libsodium checks the tag over the ciphertext before it writes any
  // plaintext, so decrypting in place is safe.
  SegmentAead aead(format, ref.key);
  if (!aead.Open(0, buf, ref.length)) {
    return FailOpen(buf, ct_len, Code::kCorrupt,
                    "chunk " + ToHex(ref.address) + " failed authentication");
  }
  return Status::Ok();
}

}  // namespace wavefs
