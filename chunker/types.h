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
// XChaCha20-Poly1305 tag appended to every ciphertext.
inline constexpr size_t kTagSize = 16;
// Largest ciphertext object: a full chunk plus its tag.
inline constexpr size_t kMaxCiphertextSize = kChunkSize + kTagSize;

using Address = std::array<uint8_t, 32>;   // BLAKE2b-256(ciphertext)
using ChunkKey = std::array<uint8_t, 32>;  // BLAKE2b-256(key=secret, plaintext)
using Secret = std::array<uint8_t, 32>;    // per-store convergence secret

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
