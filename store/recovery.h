// Start-up reconciliation of the index, the spill and the queue, after a
// clean stop or a crash (kill -9, power cut). Run before anything is
// mounted or uploaded.
//
// - Inodes without links (unlinked while open when the daemon died, or
//   directories removed while open) are deleted with their chunk refs and
//   extended attributes.
// - Staged files no queue entry names are leftovers of a crash between
//   staging and writing the entry: removed.
// - Staged files the queue names are uploaded only if they hash to their
//   address: a file torn by a power cut (its queue entry reached the disk
//   through a later synced index write, its bytes did not) is removed, so
//   the uploader takes the store's copy if there is an intact one, and
//   otherwise reports the chunk lost instead of uploading garbage under
//   that address.
// - When the store (if given) has no intact copy of a damaged chunk either,
//   the files naming it are named in the log and in the report, with the
//   byte ranges that now read EIO: data that was written but never synced
//   when the power went (an fsync makes every chunk durable first; see
//   Index::SetSyncBarrier).
// Thread safety: call alone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "store/chunk_store.h"
#include "store/index.h"
#include "store/spill.h"
#include "util/status.h"

namespace wavefs {

struct RecoveryReport {
  uint64_t orphans_reclaimed = 0;
  uint64_t stale_staged_removed = 0;
  uint64_t torn_staged_removed = 0;
  uint64_t staged_verified = 0;
  // "name (inode N): bytes [a, b) lost" per damaged range of a file.
  std::vector<std::string> lost_ranges;
};

// `format` is the store's chunk format: what a staged or stored object must
// hash to (chunker/crypto.h AddressOf).
Result<RecoveryReport> RecoverAtStart(Index* index, Spill* spill,
                                      ChunkFormat format,
                                      ChunkStore* store = nullptr);

}  // namespace wavefs
