// Spill: the local staging directory for ciphertext chunks awaiting upload.
//
// One file per address (64 hex chars) directly in `dir`. Stage writes a
// temporary file and renames it in (atomic against a killed process; no
// fsync: Sync(address) makes it durable against power loss, which FUSE fsync
// asks for). A staged file is only ever ciphertext. Thread-safe: concurrent
// Stage of the same address is harmless (same bytes, atomic rename).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "chunker/types.h"
#include "util/status.h"

namespace wavefs {

class Spill {
 public:
  // Creates dir (0700) when absent and removes leftover temporary files.
  static Result<std::unique_ptr<Spill>> Open(const std::string& dir);

  Status Stage(const Address& address, std::span<const uint8_t> ciphertext);
  Status Sync(const Address& address);
  bool Contains(const Address& address) const;
  // kNotFound when the address is not staged (e.g. uploaded meanwhile).
  Status Read(const Address& address, std::vector<uint8_t>* out) const;
  // Bytes [offset, offset + len) of a staged chunk; kNotFound as Read.
  Status ReadRange(const Address& address, uint64_t offset, size_t len,
                   std::vector<uint8_t>* out) const;
  Status Remove(const Address& address);  // ok when absent
  Status List(const std::function<void(const Address&)>& fn) const;
  // Free bytes on the spill's filesystem.
  Result<uint64_t> FreeBytes() const;
  std::string PathOf(const Address& address) const;
  const std::string& dir() const { return dir_; }

 private:
  explicit Spill(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace wavefs
