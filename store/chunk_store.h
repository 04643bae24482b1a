// ChunkStore: where ciphertext chunks live, keyed by their address.
//
// Implementations: LocalStore (a directory, the default), MemoryStore (tests,
// with fault injection), CountingStore (a decorator that counts calls), and
// later S3. A store only ever sees ciphertext.
//
// Contract (tests/store/chunk_store_contract_test.cc runs it against each):
// - Put is idempotent and durable when it returns ok: a later Get returns the
//   same bytes even after a crash.
// - Get of an absent address returns Code::kNotFound; `out` is resized to the
//   object's size.
// - Remove of an absent address is ok.
// - Retryable failures (timeouts, unreachable) set Status::retryable().
// Thread safety: every implementation is safe for concurrent calls.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "chunker/types.h"
#include "util/status.h"

namespace wavefs {

class ChunkStore {
 public:
  virtual ~ChunkStore() = default;

  virtual Status Put(const Address& address,
                     std::span<const uint8_t> ciphertext) = 0;
  // Puts the content of a local file (a staged spill file). The default reads
  // the file and calls Put. A store on the same filesystem may move the file
  // in by rename instead; on ok the file at `path` may therefore be gone.
  // `scratch` is a reusable buffer for the default path.
  virtual Status PutFile(const Address& address, const std::string& path,
                         std::vector<uint8_t>* scratch);
  virtual Status Get(const Address& address, std::vector<uint8_t>* out) = 0;
  virtual Result<bool> Has(const Address& address) = 0;
  virtual Status Remove(const Address& address) = 0;
  // Calls fn for every stored address, in no particular order.
  virtual Status List(const std::function<void(const Address&)>& fn) = 0;
  // For log lines: "local:/srv/store", "memory".
  virtual std::string Describe() const = 0;
};

}  // namespace wavefs
