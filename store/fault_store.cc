#include "store/fault_store.h"

#include <thread>

#include "store/file_util.h"

namespace wavefs {

namespace {

bool Damages(FaultStore::Effect effect) {
  return effect == FaultStore::Effect::kTear ||
         effect == FaultStore::Effect::kCorrupt;
}

FaultStore::Rule MakeRule(FaultStore::Op op, FaultStore::Effect effect,
                          uint64_t times, uint64_t skip) {
  FaultStore::Rule r;
  r.op = op;
  r.effect = effect;
  r.times = times;
  r.skip = skip;
  return r;
}

}  // namespace

FaultStore::RuleId FaultStore::Add(Rule rule) {
  // A kFail rule must fail: an ok status would make it a silent no-op.
  if (rule.effect == Effect::kFail && rule.status.ok()) {
    rule.status = Status::Error(Code::kIo, "injected fault", EIO);
  }
  std::lock_guard<std::mutex> lock(mu_);
  const RuleId id = next_id_++;
  rules_.push_back(Entry{id, std::move(rule)});
  return id;
}

void FaultStore::Lift(RuleId id) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase_if(rules_, [&](const Entry& e) { return e.id == id; });
}

void FaultStore::LiftAll() {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.clear();
  latency_.fill(std::chrono::milliseconds(0));
  for (auto& hook : hooks_) hook = nullptr;
}

FaultStore::RuleId FaultStore::Fail(Op op, Status status, uint64_t times,
                                    uint64_t skip) {
  Rule r = MakeRule(op, Effect::kFail, times, skip);
  r.status = std::move(status);
  return Add(std::move(r));
}

FaultStore::RuleId FaultStore::FailPuts(Status status, uint64_t times,
                                        uint64_t skip) {
  return Fail(Op::kPut, std::move(status), times, skip);
}

FaultStore::RuleId FaultStore::FailGets(Status status, uint64_t times,
                                        uint64_t skip) {
  return Fail(Op::kGet, std::move(status), times, skip);
}

FaultStore::RuleId FaultStore::FailSyncs(Status status, uint64_t times,
                                         uint64_t skip) {
  return Fail(Op::kSync, std::move(status), times, skip);
}

FaultStore::RuleId FaultStore::TearPuts(size_t keep_bytes, uint64_t times,
                                        uint64_t skip) {
  Rule r = MakeRule(Op::kPut, Effect::kTear, times, skip);
  r.keep_bytes = keep_bytes;
  return Add(std::move(r));
}

FaultStore::RuleId FaultStore::CorruptPuts(uint64_t times, uint64_t skip) {
  Rule r = MakeRule(Op::kPut, Effect::kCorrupt, times, skip);
  return Add(std::move(r));
}

void FaultStore::SetLatency(Op op, std::chrono::milliseconds delay) {
  std::lock_guard<std::mutex> lock(mu_);
  latency_[Index(op)] = delay;
}

void FaultStore::SetHook(Op op, std::function<void(const Address*)> hook) {
  std::lock_guard<std::mutex> lock(mu_);
  hooks_[Index(op)] = std::move(hook);
}

Status FaultStore::Retryable(const std::string& what) {
  return Status::Error(Code::kUnavailable, what, 0, /*retryable=*/true);
}

Status FaultStore::Permanent(const std::string& what) {
  return Status::Error(Code::kPermission, what, EACCES, /*retryable=*/false);
}

Status FaultStore::NoSpace() { return Errno(ENOSPC); }

Status FaultStore::Errno(int err) {
  return Status::FromErrno(err, "injected fault");
}

uint64_t FaultStore::fired() const {
  uint64_t n = 0;
  for (const auto& f : fired_) n += f.load();
  return n;
}

std::optional<FaultStore::Rule> FaultStore::Begin(Op op,
                                                  const Address* address) {
  calls_[Index(op)].fetch_add(1);
  std::function<void(const Address*)> hook;
  std::chrono::milliseconds delay{0};
  std::optional<Rule> firing;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hook = hooks_[Index(op)];
    delay = latency_[Index(op)];
    for (Entry& e : rules_) {
      const Rule& r = e.rule;
      if (r.op != op) continue;
      if (Damages(r.effect) && op != Op::kPut && op != Op::kGet) continue;
      if (r.only && (address == nullptr || *r.only != *address)) continue;
      e.seen += 1;
      if (firing || e.seen <= r.skip || e.fired >= r.times) continue;
      e.fired += 1;
      firing = r;
    }
  }
  // Outside the lock: a hook may block until the test releases it.
  if (hook) hook(address);
  if (delay.count() > 0) std::this_thread::sleep_for(delay);
  if (firing) fired_[Index(op)].fetch_add(1);
  return firing;
}

void FaultStore::Damage(const Rule& rule, std::vector<uint8_t>* bytes) {
  if (rule.effect == Effect::kTear) {
    if (bytes->size() > rule.keep_bytes) bytes->resize(rule.keep_bytes);
  } else if (rule.effect == Effect::kCorrupt) {
    if (bytes->empty()) {
      bytes->push_back(0x5a);
    } else {
      (*bytes)[bytes->size() / 2] ^= 0x01;
    }
  }
}

Status FaultStore::Put(const Address& address,
                       std::span<const uint8_t> ciphertext) {
  auto rule = Begin(Op::kPut, &address);
  if (!rule) return ForwardingStore::Put(address, ciphertext);
  if (rule->effect == Effect::kFail) return rule->status;
  std::vector<uint8_t> damaged(ciphertext.begin(), ciphertext.end());
  Damage(*rule, &damaged);
  return ForwardingStore::Put(address, damaged);
}

Status FaultStore::PutFile(const Address& address, const std::string& path,
                           std::vector<uint8_t>* scratch) {
  auto rule = Begin(Op::kPut, &address);
  if (!rule) return ForwardingStore::PutFile(address, path, scratch);
  if (rule->effect == Effect::kFail) return rule->status;
  // Damaged bytes go in by Put: the staged file stays where it is (a store
  // that moves files in by rename would otherwise take the intact file).
  WAVEFS_RETURN_IF_ERROR(ReadWholeFile(path, scratch));
  Damage(*rule, scratch);
  return ForwardingStore::Put(address, *scratch);
}

Status FaultStore::Sync() {
  auto rule = Begin(Op::kSync, nullptr);
  if (rule) return rule->status;
  return ForwardingStore::Sync();
}

Status FaultStore::Get(const Address& address, std::vector<uint8_t>* out) {
  auto rule = Begin(Op::kGet, &address);
  if (rule && rule->effect == Effect::kFail) return rule->status;
  WAVEFS_RETURN_IF_ERROR(ForwardingStore::Get(address, out));
  if (rule) Damage(*rule, out);
  return Status::Ok();
}

Status FaultStore::GetRange(const Address& address, uint64_t offset, size_t len,
                            std::vector<uint8_t>* out) {
  auto rule = Begin(Op::kGet, &address);
  if (rule && rule->effect == Effect::kFail) return rule->status;
  if (rule && rule->effect == Effect::kTear &&
      offset + len > rule->keep_bytes) {
    out->clear();
    return Status::Error(Code::kCorrupt, "chunk " + ToHex(address) +
                                             " ends before byte " +
                                             std::to_string(offset + len) +
                                             " (injected short object)");
  }
  WAVEFS_RETURN_IF_ERROR(ForwardingStore::GetRange(address, offset, len, out));
  if (rule && rule->effect == Effect::kCorrupt) Damage(*rule, out);
  return Status::Ok();
}

Result<bool> FaultStore::Has(const Address& address) {
  auto rule = Begin(Op::kHas, &address);
  if (rule) return rule->status;
  return ForwardingStore::Has(address);
}

Status FaultStore::Remove(const Address& address) {
  auto rule = Begin(Op::kRemove, &address);
  if (rule) return rule->status;
  return ForwardingStore::Remove(address);
}

Status FaultStore::List(const std::function<void(const Address&)>& fn) {
  auto rule = Begin(Op::kList, nullptr);
  if (rule) return rule->status;
  return ForwardingStore::List(fn);
}

std::string FaultStore::Describe() const {
  return "faults+" + ForwardingStore::Describe();
}

}  // namespace wavefs
