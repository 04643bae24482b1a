// Data maps and chunk refs: their serialised forms (docs/format.md).
//
// A data map is a read capability: the file size plus, per chunk index that
// holds data, its ChunkRef. Indexes missing from the map read as zeros.
// Encoding is little-endian and starts with a magic and a version, so later
// versions can be told apart. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chunker/types.h"
#include "util/status.h"

namespace wavefs {

struct DataMap {
  uint64_t size = 0;
  // Sorted by chunk index, no duplicates, every index < ChunkCountFor(size).
  std::vector<std::pair<uint64_t, ChunkRef>> chunks;
  bool operator==(const DataMap&) const = default;
};

inline constexpr uint32_t kDataMapMagic = 0x4d444657;  // "WFDM" little-endian
inline constexpr uint16_t kDataMapVersion = 1;

std::string EncodeDataMap(const DataMap& map);
// kCorrupt with a message naming what is wrong (magic, version, truncation,
// unsorted indexes, index past the size, trailing bytes).
Result<DataMap> DecodeDataMap(std::string_view bytes);

// One ChunkRef as stored in the local index (fixed size, versioned).
inline constexpr size_t kEncodedChunkRefSize = 1 + 1 + 4 + 32 + 32;
std::string EncodeChunkRef(const ChunkRef& ref);
Result<ChunkRef> DecodeChunkRef(std::string_view bytes);

}  // namespace wavefs
