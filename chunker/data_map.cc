#include "chunker/data_map.h"

#include <cstring>

#include "chunker/le_codec.h"

namespace wavefs {
namespace {

constexpr uint8_t kKindData = 0;
constexpr uint8_t kKindHole = 1;
constexpr uint8_t kChunkRefVersion = 1;

// Fixed part of a v1 data map: magic, version, flags, size, entry count.
constexpr size_t kDataMapHeaderSize = 4 + 2 + 2 + 8 + 8;
// Smallest entry (a hole): index, kind, length.
constexpr size_t kMinEntrySize = 8 + 1 + 4;

Status Corrupt(const std::string& what) {
  return Status::Error(Code::kCorrupt, "data map: " + what);
}

Status Truncated(const Reader& r, const char* field) {
  return Corrupt(std::string("truncated at byte ") + std::to_string(r.pos()) +
                 " while reading " + field);
}

// Checks the fields every encoded chunk has, whatever the container.
Status CheckKindAndLength(uint8_t kind, uint32_t length) {
  if (kind != kKindData && kind != kKindHole) {
    return Status::Error(Code::kCorrupt,
                         "unknown chunk kind " + std::to_string(kind));
  }
  if (length > kChunkSize) {
    return Status::Error(
        Code::kCorrupt,
        "chunk length " + std::to_string(length) + " exceeds the chunk size");
  }
  if (kind == kKindData && length == 0) {
    return Status::Error(Code::kCorrupt, "data chunk has length 0");
  }
  return Status::Ok();
}

}  // namespace

std::string EncodeDataMap(const DataMap& map) {
  std::string out;
  size_t data_entries = 0;
  for (const auto& [index, ref] : map.chunks) data_entries += ref.hole ? 0 : 1;
  out.reserve(kDataMapHeaderSize + map.chunks.size() * kMinEntrySize +
              data_entries * 64);
  Writer w(&out);
  w.U32(kDataMapMagic);
  w.U16(kDataMapVersion);
  w.U16(0);  // flags: none defined in version 1
  w.U64(map.size);
  w.U64(map.chunks.size());
  for (const auto& [index, ref] : map.chunks) {
    w.U64(index);
    w.U8(ref.hole ? kKindHole : kKindData);
    w.U32(ref.length);
    if (!ref.hole) {
      w.Bytes(ref.address);
      w.Bytes(ref.key);
    }
  }
  return out;
}

Result<DataMap> DecodeDataMap(std::string_view bytes) {
  Reader r(bytes);
  uint32_t magic;
  if (!r.U32(&magic)) return Truncated(r, "magic");
  if (magic != kDataMapMagic) return Corrupt("bad magic");
  uint16_t version;
  if (!r.U16(&version)) return Truncated(r, "version");
  if (version != kDataMapVersion) {
    return Corrupt("unknown version " + std::to_string(version));
  }
  uint16_t flags;
  if (!r.U16(&flags)) return Truncated(r, "flags");
  if (flags != 0) return Corrupt("unknown flags " + std::to_string(flags));

  DataMap map;
  if (!r.U64(&map.size)) return Truncated(r, "size");
  uint64_t count;
  if (!r.U64(&count)) return Truncated(r, "entry count");
  // Bounds the reservation below by what the input can actually hold.
  if (count > r.remaining() / kMinEntrySize) {
    return Corrupt("truncated: " + std::to_string(count) +
                   " entries cannot fit in " + std::to_string(r.remaining()) +
                   " bytes");
  }
  const uint64_t chunk_count = ChunkCountFor(map.size);
  map.chunks.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t index;
    if (!r.U64(&index)) return Truncated(r, "chunk index");
    if (!map.chunks.empty() && index <= map.chunks.back().first) {
      return Corrupt(
          index == map.chunks.back().first
              ? "duplicate chunk index " + std::to_string(index)
              : "chunk indexes not sorted: " + std::to_string(index) +
                    " after " + std::to_string(map.chunks.back().first));
    }
    if (index >= chunk_count) {
      return Corrupt("chunk index " + std::to_string(index) +
                     " past the end of a file of size " +
                     std::to_string(map.size));
    }
    uint8_t kind;
    if (!r.U8(&kind)) return Truncated(r, "chunk kind");
    ChunkRef ref;
    if (!r.U32(&ref.length)) return Truncated(r, "chunk length");
    Status st = CheckKindAndLength(kind, ref.length);
    if (!st.ok()) {
      return st.Annotate("data map: chunk " + std::to_string(index));
    }
    ref.hole = kind == kKindHole;
    if (!ref.hole) {
      if (!r.Bytes(&ref.address)) return Truncated(r, "chunk address");
      if (!r.Bytes(&ref.key)) return Truncated(r, "chunk key");
    }
    map.chunks.emplace_back(index, ref);
  }
  if (r.remaining() != 0) {
    return Corrupt(std::to_string(r.remaining()) +
                   " trailing bytes after the last entry");
  }
  return map;
}

std::string EncodeChunkRef(const ChunkRef& ref) {
  std::string out;
  out.reserve(kEncodedChunkRefSize);
  Writer w(&out);
  w.U8(kChunkRefVersion);
  w.U8(ref.hole ? kKindHole : kKindData);
  w.U32(ref.length);
  // A hole has no address or key: always write zeros so the form is
  // canonical.
  static constexpr std::array<uint8_t, 32> kZero{};
  w.Bytes(ref.hole ? kZero : ref.address);
  w.Bytes(ref.hole ? kZero : ref.key);
  return out;
}

Result<ChunkRef> DecodeChunkRef(std::string_view bytes) {
  if (bytes.size() != kEncodedChunkRefSize) {
    return Status::Error(Code::kCorrupt,
                         "chunk ref: " + std::to_string(bytes.size()) +
                             " bytes, expected " +
                             std::to_string(kEncodedChunkRefSize));
  }
  Reader r(bytes);
  uint8_t version = 0;
  uint8_t kind = 0;
  ChunkRef ref;
  // Cannot fail: the size was checked above.
  (void)(r.U8(&version) && r.U8(&kind) && r.U32(&ref.length) &&
         r.Bytes(&ref.address) && r.Bytes(&ref.key));
  if (version != kChunkRefVersion) {
    return Status::Error(Code::kCorrupt, "chunk ref: unknown version " +
                                             std::to_string(version));
  }
  Status st = CheckKindAndLength(kind, ref.length);
  if (!st.ok()) return st.Annotate("chunk ref");
  ref.hole = kind == kKindHole;
  if (ref.hole && (ref.address != Address{} || ref.key != ChunkKey{})) {
    return Status::Error(Code::kCorrupt,
                         "chunk ref: hole carries a non-zero address or key");
  }
  return ref;
}

}  // namespace wavefs
