#include "chunker/crypto.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <string>

namespace wavefs {
namespace {

static_assert(sizeof(ChunkKey) == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
static_assert(kTagSize == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(sizeof(Address) == crypto_generichash_BYTES);
static_assert(sizeof(Secret) >= crypto_generichash_KEYBYTES_MIN &&
              sizeof(Secret) <= crypto_generichash_KEYBYTES_MAX);
static_assert(kChunkSize <= UINT32_MAX, "ChunkRef::length is a uint32_t");

// Every chunk is sealed under its own key, so one fixed nonce never repeats
// under a key with a different plaintext.
constexpr unsigned char kNonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES] =
    {};

// Format 2: segment i's nonce is i as a little-endian u64, then zeros.
using SegmentNonce =
    std::array<unsigned char, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES>;
SegmentNonce NonceOfSegment(uint64_t i) {
  SegmentNonce nonce{};
  for (int b = 0; b < 8; ++b)
    nonce[b] = static_cast<unsigned char>(i >> (8 * b));
  return nonce;
}

// Wipes the whole buffer so no unauthenticated plaintext (or half-decrypted
// bytes) outlives a failed open, then reports `message` as corruption.
Status FailOpen(uint8_t* buf, size_t ct_len, Code code, std::string message) {
  sodium_memzero(buf, ct_len);
  return Status::Error(code, std::move(message));
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

ChunkKey DeriveChunkKey(const Secret& secret,
                        std::span<const uint8_t> plaintext) {
  ChunkKey key{};
  // Cannot fail: every length is within libsodium's bounds (static_asserts).
  crypto_generichash(key.data(), key.size(), plaintext.data(), plaintext.size(),
                     secret.data(), secret.size());
  return key;
}

Address AddressOf(std::span<const uint8_t> ciphertext) {
  Address address{};
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
  ref.key = DeriveChunkKey(secret, {buf, len});
  if (format == ChunkFormat::kWhole) {
    // In place (c == m) is supported by libsodium: the stream cipher XORs
    // byte by byte and the MAC is computed over the ciphertext afterwards.
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
        buf, buf + len, nullptr, buf, len, nullptr, 0, nullptr, kNonce,
        ref.key.data());
  } else {
    // Last segment first: each moves up by 16 bytes per earlier segment to
    // make room for the tags, and moving from the end never overwrites
    // plaintext that is still to be sealed.
    for (uint64_t i = SegmentCountFor(len); i-- > 0;) {
      const size_t pt_off = i * kSegmentSize;
      const size_t seg_len = std::min(kSegmentSize, len - pt_off);
      uint8_t* seg = buf + i * kSealedSegmentSize;
      if (seg != buf + pt_off) std::memmove(seg, buf + pt_off, seg_len);
      const SegmentNonce nonce = NonceOfSegment(i);
      crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
          seg, seg + seg_len, nullptr, seg, seg_len, nullptr, 0, nullptr,
          nonce.data(), ref.key.data());
    }
  }
  ref.address = AddressOf({buf, CiphertextSize(format, len)});
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

Status OpenSegments(const ChunkRef& ref, const SegmentRange& range,
                    uint8_t* buf, size_t ct_len) {
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
  size_t left = range.pt_len;
  for (uint64_t k = 0; k < range.count; ++k) {
    const size_t seg_len = std::min(kSegmentSize, left);
    uint8_t* seg = buf + k * kSealedSegmentSize;
    const SegmentNonce nonce = NonceOfSegment(range.first + k);
    // libsodium checks the tag before it writes any plaintext.
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
            seg, nullptr, seg, seg_len, seg + seg_len, nullptr, 0, nonce.data(),
            ref.key.data()) != 0) {
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
  if (check_address && AddressOf({buf, ct_len}) != ref.address) {
    return FailOpen(
        buf, ct_len, Code::kCorrupt,
        "chunk " + ToHex(ref.address) + " does not match its address");
  }
  if (format == ChunkFormat::kSegmented) {
    if (ref.length == 0) {
      return FailOpen(buf, ct_len, Code::kCorrupt,
                      "chunk " + ToHex(ref.address) + " has length 0");
    }
    return OpenSegments(ref, SegmentsCovering(ref.length, 0, ref.length), buf,
                        ct_len);
  }
  const size_t len = ref.length;
  // libsodium checks the tag over the ciphertext before it writes any
  // plaintext, so decrypting in place is safe.
  if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
          buf, nullptr, buf, len, buf + len, nullptr, 0, kNonce,
          ref.key.data()) != 0) {
    return FailOpen(buf, ct_len, Code::kCorrupt,
                    "chunk " + ToHex(ref.address) + " failed authentication");
  }
  return Status::Ok();
}

}  // namespace wavefs
