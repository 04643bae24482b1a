// The .wfmap file: a data map as a file of its own (docs/format.md,
// section 10), what `wavefs share` writes and `wavefs get` reads.
//
// It wraps the data map encoding (section 6) with what a reader needs to
// fetch the file from a store without a mount: the store's chunk format
// and id, the share id that pinned its chunks, and a BLAKE2b-256 checksum
// over everything before it, so a damaged or truncated file is refused
// before any chunk is fetched. Like a data map it is a read capability.
// Pure functions; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chunker/data_map.h"
#include "chunker/types.h"
#include "util/status.h"

namespace wavefs {

// Names one share (16 random bytes); the key of its pin record.
using ShareId = std::array<uint8_t, 16>;
// A store's id (store config `store_id`) as its 16 bytes.
using StoreId = std::array<uint8_t, 16>;

// "\x89WFMAP\r\n": a non-ASCII first byte and a CR LF catch 7-bit and
// newline-converting transfers, as PNG's signature does.
inline constexpr std::array<uint8_t, 8> kWfmapMagic = {0x89, 'W', 'F',  'M',
                                                       'A',  'P', '\r', '\n'};
inline constexpr uint16_t kWfmapVersion = 1;
// Fixed header before the data map, and the checksum after it.
inline constexpr size_t kWfmapHeaderSize = 72;
inline constexpr size_t kWfmapChecksumSize = 32;

struct WfMap {
  ChunkFormat chunk_format = kNewestChunkFormat;
  StoreId store_id{};
  ShareId share_id{};
  uint64_t created_unix = 0;  // seconds since the epoch
  DataMap map;                // map.size is the file size
  bool operator==(const WfMap&) const = default;
};

std::string EncodeWfmap(const WfMap& wfmap);
// kCorrupt with a message naming the problem: bad magic, unknown version,
// truncated, checksum mismatch, a bad data map, trailing bytes;
// kNotSupported for a chunk format or chunk size this build cannot read.
Result<WfMap> DecodeWfmap(std::string_view bytes);

// The distinct addresses of the map's data chunks (holes have none), in
// first-seen order: what a share pins.
std::vector<Address> DataAddresses(const DataMap& map);

// 32 lower-case hex characters of an id, and back (exactly 32 hex chars).
std::string IdToHex(const std::array<uint8_t, 16>& id);
Result<std::array<uint8_t, 16>> IdFromHex(std::string_view hex);

}  // namespace wavefs
