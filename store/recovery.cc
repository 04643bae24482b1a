#include "store/recovery.h"

#include <spdlog/spdlog.h>

#include <map>
#include <set>
#include <vector>

#include "chunker/crypto.h"

namespace wavefs {

namespace {

// True when the store surely has no intact copy of a (absent, or bytes
// that do not hash to it). A store that cannot be asked now (unreachable)
// is not evidence of a loss: the uploader finds out later.
bool SurelyNotInStore(ChunkStore* store, ChunkFormat format, const Address& a) {
  std::vector<uint8_t> copy;
  Status got = store->Get(a, &copy);
  if (got.code() == Code::kNotFound) return true;
  return got.ok() && AddressOf(format, copy) != a;
}

// Names every file range that refers to one of the lost chunks.
Status ReportLost(Index* index, const std::set<Address>& lost,
                  RecoveryReport* r) {
  std::map<uint64_t, std::vector<std::pair<uint64_t, uint64_t>>> ranges;
  std::unique_ptr<IndexView> view = index->NewView();
  WAVEFS_RETURN_IF_ERROR(
      view->ForEachChunk([&](uint64_t ino, uint64_t i, const ChunkRef& ref) {
        if (!ref.hole && lost.count(ref.address))
          ranges[ino].emplace_back(i * kChunkSize, i * kChunkSize + ref.length);
      }));
  std::map<uint64_t, std::string> names;
  WAVEFS_RETURN_IF_ERROR(
      view->ForEachDirEntry([&](uint64_t, const DirEntry& e) {
        if (ranges.count(e.ino) && !names.count(e.ino)) names[e.ino] = e.name;
      }));
  for (const auto& [ino, list] : ranges) {
    for (const auto& [from, to] : list) {
      std::string line = (names.count(ino) ? names[ino] : "(unnamed)") +
                         " (inode " + std::to_string(ino) + "): bytes [" +
                         std::to_string(from) + ", " + std::to_string(to) +
                         ") lost";
      spdlog::error(
          "{}: written but not synced when the power went; reads there give "
          "EIO",
          line);
      r->lost_ranges.push_back(std::move(line));
    }
  }
  return Status::Ok();
}

}  // namespace

Result<RecoveryReport> RecoverAtStart(Index* index, Spill* spill,
                                      ChunkFormat format, ChunkStore* store) {
  RecoveryReport r;
  auto orphans = index->ReclaimOrphans();
  if (!orphans.ok()) return orphans.status();
  r.orphans_reclaimed = *orphans;

  std::vector<Address> staged;
  WAVEFS_RETURN_IF_ERROR(
      spill->List([&](const Address& a) { staged.push_back(a); }));
  std::vector<uint8_t> bytes;
  std::set<Address> lost;
  for (const Address& a : staged) {
    auto queued = index->IsQueued(a);
    if (!queued.ok()) return queued.status();
    if (!*queued) {
      if (spill->Remove(a).ok()) ++r.stale_staged_removed;
      continue;
    }
    Status read = spill->Read(a, &bytes);
    if (read.ok() && AddressOf(format, bytes) == a) {
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
    if (store != nullptr && SurelyNotInStore(store, format, a)) lost.insert(a);
  }
  if (store != nullptr) {
    // Queued chunks whose staged file is gone altogether (its name never
    // reached the disk) and which the store does not hold intact either.
    std::vector<std::pair<Address, uint64_t>> queued;
    WAVEFS_RETURN_IF_ERROR(index->PeekQueue(SIZE_MAX, &queued));
    for (const auto& [a, len] : queued) {
      if (spill->Contains(a) || lost.count(a)) continue;
      // Staged in the index: its body is in the same log as its queue
      // entry, so the two came back together.
      auto in_index = index->HasStagedBody(a);
      if (!in_index.ok()) return in_index.status();
      if (*in_index) continue;
      if (SurelyNotInStore(store, format, a)) lost.insert(a);
    }
  }
  if (!lost.empty()) WAVEFS_RETURN_IF_ERROR(ReportLost(index, lost, &r));
  return r;
}

}  // namespace wavefs
