// Fixed sizes and value types of the chunk format (docs/format.md).
//
// Pure values, no I/O. Thread safety: values.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "util/status.h"

namespace wavefs {

// Plaintext is cut at fixed offsets into chunks of this size.
inline constexpr uint64_t kChunkSize = 4ull << 20;
// AEAD tag appended to every sealed unit (Poly1305 in formats 1 and 2, GCM
// in format 3).
inline constexpr size_t kTagSize = 16;

// How a store's chunk objects are sealed (docs/format.md, section 2); the
// store config's `format` names it, and every object in a store has it.
//   kWhole:     format 1, the chunk is one AEAD unit (plaintext + one tag).
//   kSegmented: format 2, the chunk is cut into 64 KiB segments, each its
//               own AEAD unit, so a read decrypts only the segments it needs.
//   kSegmentedAes: format 3, the layout of format 2 on primitives this
//               class of CPU runs in hardware: HMAC-SHA-256 key,
//               AES-256-GCM segments, SHA-256 address.
//   kTagAddressed: format 4, format 3's segments plus a 32-byte commitment
//               trailer; the address hashes the commitment and the tags,
//               not the whole object (one SHA-256 pass fewer per chunk).
enum class ChunkFormat : int {
  kWhole = 1,
  kSegmented = 2,
  kSegmentedAes = 3,
  kTagAddressed = 4,
};
// The newest format: what `wavefs init` writes for a local store.
inline constexpr ChunkFormat kNewestChunkFormat = ChunkFormat::kTagAddressed;
// What `wavefs init` writes for an S3 store over plain HTTP: format 3's
// address is the SHA-256 its PUTs sign, where format 4 would need an MD5
// pass instead (docs/format.md, 2d). Over TLS, init writes format 4
// (DefaultChunkFormat in store/store_location.h).
inline constexpr ChunkFormat kS3DefaultChunkFormat = ChunkFormat::kSegmentedAes;
inline constexpr bool IsKnownChunkFormat(int format) {
  return format >= 1 && format <= 4;
}
// Formats 2, 3 and 4 share the segment layout (and range reads).
inline constexpr bool IsSegmented(ChunkFormat format) {
  return format != ChunkFormat::kWhole;
}
inline constexpr size_t kSegmentSize = 64 << 10;
inline constexpr size_t kSealedSegmentSize = kSegmentSize + kTagSize;

inline constexpr uint64_t SegmentCountFor(uint64_t len) {
  return len / kSegmentSize + (len % kSegmentSize != 0 ? 1 : 0);
}
// Format 4's trailer: the chunk's commitment (docs/format.md, 2d).
inline constexpr size_t kCommitmentSize = 32;
// Object size of a chunk with `len` plaintext bytes.
inline constexpr uint64_t CiphertextSize(ChunkFormat format, uint64_t len) {
  if (format == ChunkFormat::kWhole) return len + kTagSize;
  const uint64_t segments = len + SegmentCountFor(len) * kTagSize;
  return format == ChunkFormat::kTagAddressed ? segments + kCommitmentSize
                                              : segments;
}
// Largest ciphertext object of any format: a full format-4 chunk.
inline constexpr size_t kMaxCiphertextSize =
    CiphertextSize(ChunkFormat::kTagAddressed, kChunkSize);
static_assert(kMaxCiphertextSize >=
                  CiphertextSize(ChunkFormat::kSegmented, kChunkSize) &&
              kMaxCiphertextSize >=
                  CiphertextSize(ChunkFormat::kWhole, kChunkSize));

// Formats 1 and 2: BLAKE2b-256(ciphertext); format 3: SHA-256(ciphertext);
// format 4: SHA-256 of the length, the commitment and the tags.
using Address = std::array<uint8_t, 32>;
// Formats 1 and 2: BLAKE2b-256(key=secret, plaintext); format 3:
// HMAC-SHA-256(key=secret, plaintext); format 4: HKDF-SHA-256 from it.
using ChunkKey = std::array<uint8_t, 32>;
using Secret = std::array<uint8_t, 32>;  // per-store convergence secret

// One chunk of a file as the data map records it.
// A hole (all-zero chunk) has hole=true and zero address and key; `length`
// is always the plaintext length (bytes past `length` inside the file read as
// zeros).
struct ChunkRef {
  Address address{};
  ChunkKey key{};
  uint32_t length = 0;
  bool hole = false;
  bool operator==(const ChunkRef&) const = default;
};

inline uint64_t ChunkIndexOf(uint64_t offset) { return offset / kChunkSize; }
inline uint64_t ChunkCountFor(uint64_t size) {
  // Not (size + kChunkSize - 1) / kChunkSize: that overflows near 2^64.
  return size / kChunkSize + (size % kChunkSize != 0 ? 1 : 0);
}

// Lower-case hex of any bytes.
std::string ToHex(std::span<const uint8_t> bytes);
// True for exactly what ToHex makes of an address: 64 lower-case hex
// characters (how stores and the spill name chunk files).
bool IsAddressName(std::string_view name);
// Parses exactly 64 hex characters.
Result<Address> AddressFromHex(std::string_view hex);

}  // namespace wavefs
