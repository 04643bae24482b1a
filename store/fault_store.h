// FaultStore: a ChunkStore decorator that injects faults into any store
// (memory, local directory, S3), for tests of what the uploader and the
// read path do on a bad day.
//
// Faults are rules, each matching one kind of call (Op) and optionally one
// address. A rule lets its first `skip` matching calls through and then
// fires on the next `times` (kForever: on every one). What a firing rule
// does (Effect):
//   kFail     the call returns `status` and the inner store is not called
//             (a chosen errno, an HTTP-503-like retryable status, a
//             403-like permanent one, ENOSPC, a failed Sync...);
//   kTear     a put stores only the first `keep_bytes` bytes and returns
//             ok (a write cut short that the store acknowledged anyway); a
//             get returns at most `keep_bytes` bytes (a range past them is
//             kCorrupt, as for a short object);
//   kCorrupt  a put stores the bytes with one byte flipped and returns ok;
//             a get returns what was read with one byte flipped.
// kPut covers Put and PutFile, kGet covers Get and GetRange. kTear and
// kCorrupt only apply to puts and gets; on other ops such a rule never
// matches. When several rules match a call, every one of them counts it
// and the first added that has firings left fires.
//
// Latency (SetLatency) delays every call of an op before it is forwarded.
// A hook (SetHook) runs at the start of every call of an op, before rules
// and latency, without the store's lock held: a test can block a call there
// (a latch) to force an interleaving instead of sleeping.
//
// Ownership: owns or borrows the inner store (ForwardingStore).
// Thread safety: thread-safe; rules may be added and lifted while calls run
// (a call sees the rules as they were when it began).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "store/forwarding_store.h"

namespace wavefs {

class FaultStore : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  enum class Op { kPut, kGet, kSync, kHas, kRemove, kList };
  static constexpr size_t kOpCount = 6;
  enum class Effect { kFail, kTear, kCorrupt };
  static constexpr uint64_t kForever = UINT64_MAX;

  struct Rule {
    Op op = Op::kPut;
    Effect effect = Effect::kFail;
    uint64_t skip = 0;      // matching calls let through before it fires
    uint64_t times = 1;     // firings; kForever: every later matching call
    Status status;          // kFail: what the call returns (must not be ok)
    size_t keep_bytes = 0;  // kTear
    std::optional<Address> only;  // match only calls for this address
  };
  using RuleId = uint64_t;

  // Adds a rule; its id lifts it again.
  RuleId Add(Rule rule);
  // Lifts one rule (calls already past the rule check are not affected).
  void Lift(RuleId id);
  // Lifts every rule, latency and hook.
  void LiftAll();

  // Shorthands for the common rules.
  // op fails with status (`times` firings after `skip` matching calls).
  RuleId Fail(Op op, Status status, uint64_t times = 1, uint64_t skip = 0);
  RuleId FailPuts(Status status, uint64_t times = 1, uint64_t skip = 0);
  RuleId FailGets(Status status, uint64_t times = 1, uint64_t skip = 0);
  RuleId FailSyncs(Status status, uint64_t times = 1, uint64_t skip = 0);
  RuleId TearPuts(size_t keep_bytes, uint64_t times = 1, uint64_t skip = 0);
  RuleId CorruptPuts(uint64_t times = 1, uint64_t skip = 0);
  // The store is full: every put from now on fails with ENOSPC.
  RuleId FillUp() { return FailPuts(NoSpace(), kForever); }

  void SetLatency(Op op, std::chrono::milliseconds delay);
  // address is null for Sync and List.
  void SetHook(Op op, std::function<void(const Address* address)> hook);

  // Statuses like those real stores return.
  // A timeout or HTTP 503: retrying may succeed.
  static Status Retryable(const std::string& what = "injected 503");
  // HTTP 403 (bad credentials, a bucket policy): retrying will not help.
  static Status Permanent(const std::string& what = "injected 403");
  // The store's disk is full (ENOSPC, as a local store reports it).
  static Status NoSpace();
  // A failed system call with this errno (Status::FromErrno).
  static Status Errno(int err);

  // Calls seen and calls a rule changed, per op and in all.
  uint64_t calls(Op op) const { return calls_[Index(op)].load(); }
  uint64_t fired(Op op) const { return fired_[Index(op)].load(); }
  uint64_t fired() const;

  Status Put(const Address& address,
             std::span<const uint8_t> ciphertext) override;
  Status PutFile(const Address& address, const std::string& path,
                 std::vector<uint8_t>* scratch) override;
  Status Sync() override;
  Status Get(const Address& address, std::vector<uint8_t>* out) override;
  Status GetRange(const Address& address, uint64_t offset, size_t len,
                  std::vector<uint8_t>* out) override;
  Result<bool> Has(const Address& address) override;
  Status Remove(const Address& address) override;
  // One Remove per address, so kRemove rules match each of a batch.
  void RemoveMany(std::span<const Address> addresses,
                  std::vector<Status>* results) override {
    ChunkStore::RemoveMany(addresses, results);
  }
  Status List(const std::function<void(const Address&)>& fn) override;
  std::string Describe() const override;

 private:
  struct Entry {
    RuleId id;
    Rule rule;
    uint64_t seen = 0;
    uint64_t fired = 0;
  };
  static size_t Index(Op op) { return static_cast<size_t>(op); }
  // Counts the call, runs the hook and the latency, and returns the rule
  // that fires on it (if any).
  std::optional<Rule> Begin(Op op, const Address* address);
  // Applies a kTear or kCorrupt rule to bytes about to be stored or
  // returned.
  static void Damage(const Rule& rule, std::vector<uint8_t>* bytes);

  mutable std::mutex mu_;  // guards rules_, next_id_, latency_, hooks_
  std::vector<Entry> rules_;
  RuleId next_id_ = 1;
  std::array<std::chrono::milliseconds, kOpCount> latency_{};
  std::array<std::function<void(const Address*)>, kOpCount> hooks_;
  std::array<std::atomic<uint64_t>, kOpCount> calls_{};
  std::array<std::atomic<uint64_t>, kOpCount> fired_{};
};

}  // namespace wavefs
