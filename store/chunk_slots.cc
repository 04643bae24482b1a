#include "store/chunk_slots.h"

#include <sodium.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

namespace wavefs {

void WipeChunkBuffer(void* p, size_t n) {
  if (n == 0) return;
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto start = reinterpret_cast<uintptr_t>(p);
  const uintptr_t end = start + n;
  // Every page the bytes touch, the partial ones at either end included: a
  // page holding any of them is mapped (it is part of the allocation).
  const uintptr_t first = start & ~(page - 1);
  const uintptr_t last = (end + page - 1) & ~(page - 1);
  std::vector<unsigned char> resident((last - first) / page);
  if (::mincore(reinterpret_cast<void*>(first), last - first,
                resident.data()) != 0) {
    sodium_memzero(p, n);
    return;
  }
  for (size_t i = 0; i < resident.size(); ++i) {
    if ((resident[i] & 1) == 0) continue;
    const uintptr_t from = std::max(start, first + i * page);
    const uintptr_t to = std::min(end, first + (i + 1) * page);
    sodium_memzero(reinterpret_cast<void*>(from), to - from);
  }
}

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

size_t ChunkSlots::ShedExcept(int except, const Cutoffs& cutoffs) {
  std::lock_guard<std::mutex> lock(shed_mu_);
  const size_t before = used_.load();
  for (size_t i = 0; i < holders_.size(); ++i)
    if (static_cast<int>(i) != except) holders_[i](cutoffs);
  // Other buffers may come and go meanwhile: a guide, not a count.
  const size_t after = used_.load();
  return after < before ? before - after : 0;
}

void ChunkSlots::ShedOthers(int id) {
  const Clock::time_point now = Clock::now();
  if (ShedExcept(id, Cutoffs{now - cached_idle_, now - reuse_idle_}) > 0)
    sheds_.fetch_add(1);
}

size_t ChunkSlots::ShedIdle(Clock::time_point cutoff) {
  return ShedExcept(-1, Cutoffs{cutoff, cutoff});
}

void ChunkSlots::Give(size_t n) { used_.fetch_sub(n); }

}  // namespace wavefs
