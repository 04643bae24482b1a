#include "store/recovery.h"

#include <spdlog/spdlog.h>

#include <vector>

#include "chunker/crypto.h"

namespace wavefs {

Result<RecoveryReport> RecoverAtStart(Index* index, Spill* spill) {
  RecoveryReport r;
  auto orphans = index->ReclaimOrphans();
  if (!orphans.ok()) return orphans.status();
  r.orphans_reclaimed = *orphans;

  std::vector<Address> staged;
  WAVEFS_RETURN_IF_ERROR(
      spill->List([&](const Address& a) { staged.push_back(a); }));
  std::vector<uint8_t> bytes;
  for (const Address& a : staged) {
    auto queued = index->IsQueued(a);
    if (!queued.ok()) return queued.status();
    if (!*queued) {
      if (spill->Remove(a).ok()) ++r.stale_staged_removed;
      continue;
    }
    Status read = spill->Read(a, &bytes);
    if (read.ok() && AddressOf(bytes) == a) {
      ++r.staged_verified;
      continue;
    }
    spdlog::warn(
        "staged chunk {} is damaged ({}); removed, the store's copy "
        "is used if it has an intact one",
        ToHex(a),
        read.ok() ? "its bytes do not hash to its name" : read.ToString());
    WAVEFS_RETURN_IF_ERROR(spill->Remove(a));
    ++r.torn_staged_removed;
  }
  return r;
}

}  // namespace wavefs
