#include "store/chunk_slots.h"

namespace wavefs {

int ChunkSlots::AddHolder(Shed shed) {
  holders_.push_back(std::move(shed));
  return static_cast<int>(holders_.size()) - 1;
}

bool ChunkSlots::Take(int id) {
  size_t now = used_.fetch_add(1) + 1;
  if (now > total_) {
    ShedOthers(id);
    now = used_.load();
  }
  // The peak after shedding: what was mapped at once, not the moment
  // between this buffer's slot and the others' giving back.
  size_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  return now <= total_;
}

void ChunkSlots::Rebalance(int id) {
  if (used_.load() > total_) ShedOthers(id);
}

size_t ChunkSlots::ShedExcept(int except, Clock::time_point cutoff) {
  std::lock_guard<std::mutex> lock(shed_mu_);
  const size_t before = used_.load();
  for (size_t i = 0; i < holders_.size(); ++i)
    if (static_cast<int>(i) != except) holders_[i](cutoff);
  // Other buffers may come and go meanwhile: a guide, not a count.
  const size_t after = used_.load();
  return after < before ? before - after : 0;
}

void ChunkSlots::ShedOthers(int id) {
  if (ShedExcept(id, Clock::now() - min_idle_) > 0) sheds_.fetch_add(1);
}

size_t ChunkSlots::ShedIdle(Clock::time_point cutoff) {
  return ShedExcept(-1, cutoff);
}

void ChunkSlots::Give(size_t n) { used_.fetch_sub(n); }

}  // namespace wavefs
