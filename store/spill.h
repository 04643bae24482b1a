// Spill: the local staging directory for ciphertext chunks awaiting upload.
//
// One file per address (64 hex chars) directly in `dir`. Stage writes a
// temporary file and renames it in (atomic against a killed process; no
// fsync: Sync(address) makes it durable against power loss, which FUSE fsync
// asks for). A staged file is only ever ciphertext. Thread-safe: concurrent
// Stage of the same address is harmless (same bytes, atomic rename).
//
// The spill remembers which staged files are not yet durable, so that
// SyncStaged() can make all of them durable before the index makes a record
// naming one of them durable (see Index::SetSyncBarrier). It also remembers
// (up to kMaxSyncedCache) which files Sync(address) made durable: a staged
// file never changes, so a second Sync of it costs a stat instead of two
// fsyncs (a database fsyncing its file names the same sealed chunks every
// time, Committer::SyncNamedChunks). Every mutating call goes through the
// Env (store/env.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "chunker/types.h"
#include "store/env.h"
#include "util/status.h"

namespace wavefs {

class Spill {
 public:
  // Creates dir (0700) when absent and removes leftover temporary files.
  static Result<std::unique_ptr<Spill>> Open(const std::string& dir,
                                             Env* env = Env::Default());

  Status Stage(const Address& address, std::span<const uint8_t> ciphertext);
  // Makes one staged file and its name durable; kNotFound when it is not
  // staged (moved into the store, or removed). Free for a file this call
  // already made durable that is still in place.
  Status Sync(const Address& address);
  // Makes every file staged so far durable (each file, then the directory
  // once). *moved_out (optional) is set when a file staged since the last
  // SyncStaged has left the spill before it was synced (the local store
  // moves files in by rename): its bytes are then durable only after the
  // store's Sync().
  Status SyncStaged(bool* moved_out = nullptr);
  bool Contains(const Address& address) const;
  // kNotFound when the address is not staged (e.g. uploaded meanwhile).
  Status Read(const Address& address, std::vector<uint8_t>* out) const;
  // Bytes [offset, offset + len) of a staged chunk; kNotFound as Read.
  Status ReadRange(const Address& address, uint64_t offset, size_t len,
                   std::vector<uint8_t>* out) const;
  // Whether the staged file holds exactly `bytes`; kNotFound as Read.
  Result<bool> Holds(const Address& address,
                     std::span<const uint8_t> bytes) const;
  Status Remove(const Address& address);  // ok when absent
  Status List(const std::function<void(const Address&)>& fn) const;
  // Free bytes on the spill's filesystem.
  Result<uint64_t> FreeBytes() const;
  std::string PathOf(const Address& address) const;
  const std::string& dir() const { return dir_; }

 private:
  Spill(std::string dir, Env* env) : dir_(std::move(dir)), env_(env) {}
  std::string dir_;
  Env* env_;
  std::mutex mu_;
  std::set<Address> unsynced_;  // staged, not yet made durable
  // Made durable by Sync and not staged or removed since. A cache: cleared
  // when full, so it stays small whatever the spill holds.
  static constexpr size_t kMaxSyncedCache = 4096;
  std::set<Address> synced_;
  // Bumped by every Stage and Remove: a Sync that saw another value before
  // its fsyncs may not have synced the file now at that name.
  uint64_t changes_ = 0;
};

}  // namespace wavefs
