// Index snapshots: encrypted, versioned copies of the local index kept in
// the store, so that a machine with nothing but the key file and the store
// can rebuild its index (`wavefs restore`). The format is in
// docs/format.md, section 10.
//
// What a snapshot holds: every record of one consistent IndexView (a
// RocksDB snapshot) except the upload queue ('Q') and the address cache
// ('A'), which restore rebuilds: an address named by a chunk ref is marked
// stored. Chunks still queued when the snapshot was taken are listed as
// *pending*: restore checks each of them in the store and reports the files
// whose chunks are missing (their ranges read EIO, fsck names them). A
// snapshot taken at unmount, after the final drain, has none.
//
// Key: BLAKE2b-based crypto_kdf of the convergence secret with its own
// context ("wfsnap01", subkey 1), so a snapshot key never equals a chunk key
// (those are keyed BLAKE2b of the chunk's plaintext, with no context).
// Sealed with crypto_secretstream_xchacha20poly1305 in frames of at most
// 1 MiB; the plaintext header is authenticated as every frame's associated
// data; the final frame's tag catches truncation. A short key-check value
// in the header tells a wrong key from a damaged snapshot.
//
// Objects: `snapshots/<id>` (ChunkStore::PutObject). Ids sort by time:
// "YYYYMMDDTHHMMSS.mmmZ-<8 hex random>" (UTC).
//
// Memory: the daemon, gc and restore stream a snapshot through a file in a
// work directory (the metadata directory), a frame at a time: memory stays
// at about two frames whatever the index's size. The object is about 230
// bytes per file of one chunk plus 90 per further chunk (docs/format.md).
// Thread safety: the functions are thread-safe; SnapshotWriter is not.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "chunker/types.h"
#include "store/chunk_store.h"
#include "store/index.h"
#include "util/status.h"

namespace wavefs {

inline constexpr const char* kSnapshotDir = "snapshots";
inline constexpr uint16_t kSnapshotVersion = 1;
inline constexpr size_t kSnapshotFrame = 1 << 20;  // plaintext per frame
inline constexpr size_t kDefaultSnapshotKeep = 10;

using SnapshotKey = std::array<uint8_t, 32>;
using StoreIdBytes = std::array<uint8_t, 16>;

// crypto_kdf(secret, subkey 1, context "wfsnap01"). InitCrypto first.
SnapshotKey DeriveSnapshotKey(const Secret& secret);

// A fresh id for a snapshot taken at `now`.
std::string NewSnapshotId(std::chrono::system_clock::time_point now);
bool IsSnapshotId(std::string_view id);
// "2025-01-31 12:00:00.123 UTC" from an id.
std::string SnapshotTimeOf(std::string_view id);
std::string SnapshotObjectName(const std::string& id);

// Builds one snapshot object: in memory (Finish returns it), or, given a
// sink, handing each sealed frame to the sink as it is made (Finish returns
// what is left; status() says whether the sink took everything).
class SnapshotWriter {
 public:
  using Sink = std::function<Status(std::span<const uint8_t>)>;
  SnapshotWriter(const SnapshotKey& key, const StoreIdBytes& store_id,
                 const std::string& id, uint64_t created_ms, Sink sink = {});
  void AddRecord(std::string_view key, std::string_view value);
  void AddPending(const Address& address);
  // The whole object, or with a sink the bytes it has not taken yet (the
  // final frame); the writer is spent.
  std::vector<uint8_t> Finish();
  uint64_t records() const { return records_; }
  uint64_t pending() const { return pending_; }
  // The object's size (after Finish).
  uint64_t bytes() const { return bytes_; }
  // The first error of the sink.
  const Status& status() const { return sink_status_; }

 private:
  void Seal(bool final);
  std::vector<uint8_t> header_;  // every frame's associated data
  std::vector<uint8_t> out_;     // sealed bytes not handed out yet
  Sink sink_;
  Status sink_status_;
  uint64_t bytes_ = 0;
  std::array<uint8_t, 52> state_{};  // crypto_secretstream state
  std::string plain_;
  uint64_t records_ = 0;
  uint64_t pending_ = 0;
};

struct SnapshotHeader {
  std::string id;
  StoreIdBytes store_id{};
  uint64_t created_ms = 0;
};

// DecodeSnapshot of the object in the file at path, read frame by frame
// (bounded memory whatever its size).
Status DecodeSnapshotFile(
    const std::string& path, const SnapshotKey& key,
    const std::string& expected_id, SnapshotHeader* header,
    const std::function<Status(std::string_view key, std::string_view value)>&
        record,
    const std::function<Status(const Address&)>& pending);

// Decodes and authenticates a snapshot object, calling record() for every
// record and pending() for every pending address, in order, as frames are
// authenticated (so a caller must discard what it got when this fails).
// expected_id: the object's name (a snapshot renamed to another id is
// refused); empty skips the check. Errors: kPermission for a key that is
// not the one it was made with; kNotSupported for an unknown version;
// kCorrupt, with what is wrong, for anything else.
Status DecodeSnapshot(
    std::span<const uint8_t> object, const SnapshotKey& key,
    const std::string& expected_id, SnapshotHeader* header,
    const std::function<Status(std::string_view key, std::string_view value)>&
        record,
    const std::function<Status(const Address&)>& pending);

struct SnapshotInfo {
  std::string id;
  uint64_t size = 0;
};
// Every snapshot in the store, oldest first.
Result<std::vector<SnapshotInfo>> ListSnapshots(ChunkStore* store);
// Removes all but the newest `keep` snapshots; returns how many went.
Result<size_t> PruneSnapshots(ChunkStore* store, size_t keep);

struct TakenSnapshot {
  std::string id;
  uint64_t records = 0;
  uint64_t pending = 0;  // chunks still queued at the snapshot
  uint64_t bytes = 0;    // the object's size
};
// Snapshots the index as it is now, puts it into the store, then prunes to
// `keep`. A failed prune is logged, not returned (the snapshot is in).
// The object is built in a scratch file in work_dir, then streamed up.
Result<TakenSnapshot> TakeSnapshot(Index* index, ChunkStore* store,
                                   const SnapshotKey& key,
                                   const StoreIdBytes& store_id, size_t keep,
                                   const std::string& work_dir);

// Every address that any snapshot in the store names (chunk refs, pins,
// pending chunks): what gc must keep so that every retained snapshot stays
// restorable. A damaged snapshot is skipped with a warning (it cannot be
// restored anyway); a wrong key is an error.
// Each snapshot passes through a scratch file in work_dir.
Status ForEachSnapshotAddress(ChunkStore* store, const SnapshotKey& key,
                              const std::string& work_dir,
                              const std::function<void(const Address&)>& fn);

struct RestoreReport {
  std::string id;              // the snapshot restored
  uint64_t records = 0;        // index records written
  uint64_t chunk_refs = 0;     // data chunk refs among them
  uint64_t pending = 0;        // chunks the snapshot listed as still queued
  uint64_t missing = 0;        // of those, absent from the store
  uint64_t damaged_files = 0;  // inodes naming a missing chunk
  // Newer snapshots that could not be used, each "ID: why".
  std::vector<std::string> skipped;
};
// Rebuilds the index at index_dir (which must not exist) from snapshot `id`
// (empty: the newest that decodes; damaged newer ones are skipped and named
// in the report). Written into index_dir + ".restoring" and renamed into
// place when complete. store_id: the store's (a snapshot of another store
// is refused). kNotFound when the store has no snapshot (or not `id`).
Result<RestoreReport> RestoreIndex(ChunkStore* store, const SnapshotKey& key,
                                   const StoreIdBytes& store_id,
                                   const std::string& index_dir,
                                   const std::string& id);

}  // namespace wavefs
