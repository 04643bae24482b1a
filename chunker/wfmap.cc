#include "chunker/wfmap.h"

#include <sodium.h>

#include <set>

#include "chunker/le_codec.h"

namespace wavefs {
namespace {

Status Corrupt(const std::string& what) {
  return Status::Error(Code::kCorrupt, "wfmap: " + what);
}

std::array<uint8_t, kWfmapChecksumSize> Checksum(std::string_view bytes) {
  std::array<uint8_t, kWfmapChecksumSize> sum{};
  crypto_generichash(sum.data(), sum.size(),
                     reinterpret_cast<const unsigned char*>(bytes.data()),
                     bytes.size(), nullptr, 0);
  return sum;
}

}  // namespace

std::string EncodeWfmap(const WfMap& m) {
  const std::string map = EncodeDataMap(m.map);
  std::string out;
  out.reserve(kWfmapHeaderSize + map.size() + kWfmapChecksumSize);
  Writer w(&out);
  w.Bytes(kWfmapMagic);
  w.U16(kWfmapVersion);
  w.U16(static_cast<uint16_t>(m.chunk_format));
  w.U32(static_cast<uint32_t>(kChunkSize));
  w.Bytes(m.store_id);
  w.Bytes(m.share_id);
  w.U64(m.created_unix);
  w.U64(m.map.size);
  w.U64(map.size());
  w.Raw(map);
  w.Bytes(Checksum(out));
  return out;
}

Result<WfMap> DecodeWfmap(std::string_view bytes) {
  Reader r(bytes);
  std::array<uint8_t, 8> magic{};
  if (!r.Bytes(&magic) || magic != kWfmapMagic)
    return Corrupt("bad magic (not a .wfmap file)");
  uint16_t version = 0;
  if (!r.U16(&version)) return Corrupt("truncated in the header");
  if (version != kWfmapVersion)
    return Corrupt("unknown version " + std::to_string(version));
  if (bytes.size() < kWfmapHeaderSize + kWfmapChecksumSize)
    return Corrupt("truncated: " + std::to_string(bytes.size()) +
                   " bytes, the header and checksum alone are " +
                   std::to_string(kWfmapHeaderSize + kWfmapChecksumSize));
  WfMap m;
  uint16_t format = 0;
  uint32_t chunk_size = 0;
  uint64_t size = 0, map_len = 0;
  // Cannot fail: the length was checked above.
  (void)(r.U16(&format) && r.U32(&chunk_size) && r.Bytes(&m.store_id) &&
         r.Bytes(&m.share_id) && r.U64(&m.created_unix) && r.U64(&size) &&
         r.U64(&map_len));
  if (map_len > r.remaining() - kWfmapChecksumSize)
    return Corrupt("truncated: the data map is " + std::to_string(map_len) +
                   " bytes but only " +
                   std::to_string(r.remaining() - kWfmapChecksumSize) +
                   " are present");
  if (map_len < r.remaining() - kWfmapChecksumSize)
    return Corrupt(
        std::to_string(r.remaining() - kWfmapChecksumSize - map_len) +
        " trailing bytes after the checksum");
  const size_t body = kWfmapHeaderSize + map_len;
  std::array<uint8_t, kWfmapChecksumSize> want{};
  std::memcpy(want.data(), bytes.data() + body, want.size());
  if (Checksum(bytes.substr(0, body)) != want)
    return Corrupt("checksum mismatch (the file is damaged)");
  if (!IsKnownChunkFormat(format))
    return Status::Error(Code::kNotSupported, "wfmap: unknown chunk format " +
                                                  std::to_string(format));
  if (chunk_size != kChunkSize)
    return Status::Error(Code::kNotSupported, "wfmap: unsupported chunk size " +
                                                  std::to_string(chunk_size));
  m.chunk_format = static_cast<ChunkFormat>(format);
  auto map = DecodeDataMap(bytes.substr(kWfmapHeaderSize, map_len));
  if (!map.ok()) return map.status().Annotate("wfmap");
  if (map->size != size)
    return Corrupt("file size " + std::to_string(size) +
                   " differs from the data map's " + std::to_string(map->size));
  m.map = std::move(*map);
  return m;
}

std::vector<Address> DataAddresses(const DataMap& map) {
  std::vector<Address> out;
  std::set<Address> seen;
  for (const auto& [index, ref] : map.chunks) {
    if (!ref.hole && seen.insert(ref.address).second)
      out.push_back(ref.address);
  }
  return out;
}

std::string IdToHex(const std::array<uint8_t, 16>& id) { return ToHex(id); }

Result<std::array<uint8_t, 16>> IdFromHex(std::string_view hex) {
  std::array<uint8_t, 16> id{};
  size_t len = 0;
  if (hex.size() != 32 ||
      sodium_hex2bin(id.data(), id.size(), hex.data(), hex.size(), nullptr,
                     &len, nullptr) != 0 ||
      len != id.size())
    return Status::Error(Code::kInvalid,
                         "'" + std::string(hex) + "' is not 32 hex characters");
  return id;
}

}  // namespace wavefs
