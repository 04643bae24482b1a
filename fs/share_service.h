// ShareService: the daemon's side of `wavefs share` / `wavefs unshare`.
//
// The CLI cannot open the index (the daemon holds its lock), so it talks
// to the daemon through wavefs's own extended attributes, which go through
// the kernel's permission checks like any other:
//
//   setxattr FILE user.wavefs.share   = <share id, 32 hex>
//       commits the file, snapshots its data map, builds the .wfmap, pins
//       its data chunks and records the share (one synced index write).
//       The kernel asks for write access to FILE (user.* attributes).
//   getxattr ANY  user.wavefs.share.<id>.<n>      (n = 0, 1, ...)
//       page n of that share's .wfmap bytes, kPageSize bytes each; the page
//       after the last is empty. A share never changes, so pages read one
//       by one always fit together, whatever happens to the file meanwhile.
//   getxattr ANY  user.wavefs.share.<id>.pending
//       how many of the share's chunks are still waiting for upload
//       (decimal): `wavefs share` waits for 0, so the map works from the
//       store alone.
//   setxattr ANY  user.wavefs.unshare = <share id>
//       drops exactly the share's pins and its record (kNotFound: unknown).
//
// Share ids are made by the CLI (16 random bytes) and act as a capability:
// pages are served to whoever names the id, and the id is in the .wfmap.
// Thread safety: all methods are thread-safe (the index serialises pins).
#pragma once

#include <cstdint>
#include <string>

#include "chunker/wfmap.h"
#include "fs/filesystem.h"
#include "store/index.h"
#include "util/status.h"

namespace wavefs {

inline constexpr const char* kXattrShare = "user.wavefs.share";
inline constexpr const char* kXattrUnshare = "user.wavefs.unshare";
inline constexpr const char* kXattrSharePrefix = "user.wavefs.share.";

class ShareService {
 public:
  // Pages fit the kernel's 64 KiB attribute value limit.
  static constexpr size_t kPageSize = 64 << 10;

  // Neither pointer is owned; both outlive the service.
  ShareService(Filesystem* fs, Index* index, ChunkFormat format,
               const StoreId& store_id);

  // True for the names this service answers (get or set).
  static bool Handles(const std::string& name);
  // getxattr of a user.wavefs.share.<id>.* name.
  Result<std::string> Get(const std::string& name);
  // setxattr of user.wavefs.share (on a regular file) or
  // user.wavefs.unshare.
  Status Set(uint64_t ino, const std::string& name, const std::string& value);

  // Shares the file: the .wfmap bytes, after pinning (tests call it
  // directly).
  Result<std::string> Share(uint64_t ino, const ShareId& id);
  Status Unshare(const ShareId& id);
  // Chunks of the share still queued for upload.
  Result<uint64_t> Pending(const ShareId& id);

 private:
  Filesystem* const fs_;
  Index* const index_;
  const ChunkFormat format_;
  const StoreId store_id_;
};

}  // namespace wavefs
