// ChunkStore: where ciphertext chunks live, keyed by their address.
//
// Implementations: LocalStore (a directory, the default), S3Store (an
// S3-compatible bucket) and MemoryStore (tests). Decorators derive from
// ForwardingStore (store/forwarding_store.h), which forwards every call:
// CountingStore (counts calls and bytes for user.wavefs.stats) and
// FaultStore (tests: injected failures, torn and corrupt puts, latency).
// A store only ever sees ciphertext.
//
// Contract (tests/store/chunk_store_contract_test.cc runs it against each):
// - Put is idempotent; once it returns ok a Get returns the same bytes, and
//   once a later Sync() returns ok they survive power loss too. (Batching
//   durability into one Sync per wave is what makes uploads to a local disk
//   fast: one filesystem sync instead of two fsyncs per chunk.)
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
  // Makes every put that returned ok so far durable. Stores whose puts are
  // durable when they return (S3) keep the default.
  virtual Status Sync() { return Status::Ok(); }
  virtual Status Get(const Address& address, std::vector<uint8_t>* out) = 0;
  // Exactly bytes [offset, offset + len) of an object, into out (resized to
  // len): what a read of a few segments of a format-2 chunk needs.
  // kNotFound when absent, kCorrupt when the object is shorter. The default
  // gets the whole object and cuts it; stores that can read a range (a file,
  // an HTTP Range request) override it.
  virtual Status GetRange(const Address& address, uint64_t offset, size_t len,
                          std::vector<uint8_t>* out);
  virtual Result<bool> Has(const Address& address) = 0;
  virtual Status Remove(const Address& address) = 0;
  // Removes every address; (*results)[i] is the outcome for addresses[i]
  // (an absent object is ok, as for Remove). The default calls Remove for
  // each; S3 sends one DeleteObjects request per 1000 addresses (gc).
  virtual void RemoveMany(std::span<const Address> addresses,
                          std::vector<Status>* results);
  // Calls fn for every stored address, in no particular order.
  virtual Status List(const std::function<void(const Address&)>& fn) = 0;
  // The same with each object's size in bytes (gc and fsck report bytes).
  // The default lists and reports size 0 ("unknown").
  virtual Status ListSized(
      const std::function<void(const Address&, uint64_t size)>& fn);
  // For log lines: "local:/srv/store", "memory".
  virtual std::string Describe() const = 0;

  // --- named objects beside the chunks (index snapshots, store/snapshot.h)
  // A name is "DIR/LEAF": two parts of [A-Za-z0-9._-] not starting with '.'
  // (IsValidObjectName); a local store keeps it as STORE/DIR/LEAF, an S3
  // store as PREFIX/DIR/LEAF. PutObject replaces an object of that name and
  // is durable when it returns. GetObject of an absent name is kNotFound.
  // RemoveObject of an absent name is ok. ListObjects calls fn with the
  // leaf and size of every object under DIR. Stores that keep no named
  // objects keep these defaults (kNotSupported).
  virtual Status PutObject(const std::string& name,
                           std::span<const uint8_t> bytes);
  virtual Status GetObject(const std::string& name, std::vector<uint8_t>* out);
  // The same from and into local files, for objects too big to hold in
  // memory (snapshots of large indexes). The defaults go through memory;
  // the local and S3 stores stream. GetObjectToFile replaces `path`.
  virtual Status PutObjectFile(const std::string& name,
                               const std::string& path);
  virtual Status GetObjectToFile(const std::string& name,
                                 const std::string& path);
  virtual Status RemoveObject(const std::string& name);
  virtual Status ListObjects(
      const std::string& dir,
      const std::function<void(const std::string& leaf, uint64_t size)>& fn);
};

// True for "DIR/LEAF" as ChunkStore's named objects want it.
bool IsValidObjectName(const std::string& name);
// True for one part of such a name (a DIR or a LEAF).
bool IsValidObjectPart(const std::string& part);

}  // namespace wavefs
