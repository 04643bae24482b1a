// The store's config file and the convergence-secret key file.
//
// A store directory holds `wavefs-store.conf` (text, versioned, see
// docs/format.md) and `chunks/`. The key file holds the 32-byte secret as 64
// hex characters plus a newline, mode 0600, never inside the store.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "chunker/types.h"
#include "util/status.h"

namespace wavefs {

// The format `init` writes for a local store unless told (an S3 store gets
// kS3DefaultChunkFormat; docs/format.md); stores of every format from
// kOldestStoreFormat to kNewestStoreFormat stay readable and writable in
// their own format.
inline constexpr int kStoreFormatVersion = static_cast<int>(kNewestChunkFormat);
inline constexpr int kOldestStoreFormat = 1;
inline constexpr int kNewestStoreFormat =
    static_cast<int>(ChunkFormat::kTagAddressed);
static_assert(kStoreFormatVersion <= kNewestStoreFormat);
inline constexpr const char* kStoreConfigName = "wavefs-store.conf";

struct StoreConfig {
  int format_version = kStoreFormatVersion;
  uint64_t chunk_size = kChunkSize;
  std::string store_id;  // 32 hex chars, random at init
  // How this store's chunk objects are sealed.
  ChunkFormat chunk_format() const {
    return static_cast<ChunkFormat>(format_version);
  }
};

// Creates the store directory (when absent) with a new config of `format`
// (kOldestStoreFormat..kStoreFormatVersion). kExists when the directory
// already holds a config.
Result<StoreConfig> InitStoreDir(const std::string& store_dir,
                                 int format = kStoreFormatVersion);
// kNotFound when there is no config ("not a wavefs store"), kCorrupt on a bad
// one, kNotSupported on an unknown format version or chunk size.
Result<StoreConfig> ReadStoreConfig(const std::string& store_dir);

// kInvalid unless `init` can make a store of `format`.
Status CheckNewStoreFormat(int format);
// A fresh config with a random store id (sodium must be initialised).
StoreConfig NewStoreConfig(int format = kStoreFormatVersion);
// The config's text (docs/format.md); ParseStoreConfig reads it back, with
// `where` (a path or URL) in its messages. Errors as for ReadStoreConfig.
std::string EncodeStoreConfig(const StoreConfig& config);
Result<StoreConfig> ParseStoreConfig(std::string_view text,
                                     const std::string& where);

// Creates a key file with a fresh random secret, mode 0600, durably; kExists
// when the file exists (never overwrites a key).
Status CreateKeyFile(const std::string& path);
// kNotFound when absent, kPermission when readable by group/others,
// kCorrupt when not 64 hex chars.
Result<Secret> ReadKeyFile(const std::string& path);

}  // namespace wavefs
