#include "store/chunk_slots.h"

namespace wavefs {

int ChunkSlots::AddHolder(std::function<void()> shed) {
  holders_.push_back(std::move(shed));
  return static_cast<int>(holders_.size()) - 1;
}

bool ChunkSlots::Take(int id) {
  size_t now = used_.fetch_add(1) + 1;
  if (now > total_) {
    sheds_.fetch_add(1);
    for (size_t i = 0; i < holders_.size(); ++i)
      if (static_cast<int>(i) != id) holders_[i]();
    now = used_.load();
  }
  // The peak after shedding: what was mapped at once, not the moment
  // between this buffer's slot and the others' giving back.
  size_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  return now <= total_;
}

void ChunkSlots::Give(size_t n) { used_.fetch_sub(n); }

}  // namespace wavefs
