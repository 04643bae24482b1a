// Test-only seams of store/index.cc, process-wide (kept out of index.h so
// that only the index and its tests see them).
#pragma once

#include <functional>

namespace wavefs {

// Index::PeekQueue runs hook after it has copied the holds and left the
// queue lock, before it scans the queue (empty: nothing). Tests use it to
// queue a chunk at exactly that point.
void SetPeekQueueHookForTesting(std::function<void()> hook);

}  // namespace wavefs
