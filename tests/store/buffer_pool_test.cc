// BufferPool's EvictNow (store/buffer_pool.h): each call ends the wait of
// one Acquire waiting for a buffer, which then calls the evict callback at
// once; the others keep waiting. The pool's own wait is 30 s here, so an
// eviction within the test comes from EvictNow only.
#include "store/buffer_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace wavefs {
namespace {

using namespace std::chrono_literals;

// Polls until pred holds (at most 20 s); returns whether it did.
template <typename Pred>
bool Eventually(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(BufferPoolTest, EvictNowEndsOneWaitPerCall) {
  BufferPool pool(1, 4096, 30s);
  std::atomic<int> evictions{0};
  // "On its way back": the waiter waits up to 200 ms more, then waits
  // again from the start.
  pool.SetEvictCallback([&] {
    evictions.fetch_add(1);
    return true;
  });
  uint8_t* held = pool.Acquire();
  ASSERT_NE(held, nullptr);
  // Nobody waits: no word is kept for later.
  EXPECT_FALSE(pool.EvictNow());
  std::vector<std::thread> waiters;
  for (int i = 0; i < 3; ++i)
    waiters.emplace_back([&] { pool.Release(pool.Acquire()); });
  ASSERT_TRUE(Eventually([&] { return pool.waiting() == 3; }));
  EXPECT_EQ(evictions.load(), 0);
  EXPECT_TRUE(pool.EvictNow());
  // One waiter evicted and waits again; the other two never stopped
  // waiting (all three woke and evicted when every woken waiter took the
  // call for itself).
  ASSERT_TRUE(Eventually([&] { return evictions.load() >= 1; }));
  ASSERT_TRUE(Eventually([&] { return pool.waiting() == 3; }));
  EXPECT_EQ(evictions.load(), 1);
  EXPECT_EQ(pool.early_evictions(), 1u);
  // The buffer comes back: each waiter gets it in turn.
  pool.Release(held);
  for (auto& t : waiters) t.join();
  EXPECT_EQ(pool.waiting(), 0u);
  EXPECT_EQ(pool.allocated(), 1u);
}

}  // namespace
}  // namespace wavefs
