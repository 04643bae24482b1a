// Snapshots of a large index stay in bounded memory (store/snapshot.h):
// taking one, reading it for gc and restoring it each grow the process's
// peak RSS by a few MiB, not by the snapshot's size. Labelled "memory" (RSS
// bounds do not hold under ASan, whose quarantine keeps freed memory).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "chunker/crypto.h"
#include "chunker/data_map.h"
#include "store/local_store.h"
#include "store/snapshot.h"
#include "tests/store/store_test_util.h"

namespace wavefs {
namespace {

using testing_util::MakeAddress;
using testing_util::TempDir;

uint64_t StatusKib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0)
      return std::stoull(line.substr(key.size() + 1));
  return 0;
}

// Resets VmHWM to the current RSS (Linux 4.0+), so the next VmHWM is the
// peak of what follows.
uint64_t ResetPeak() {
  std::ofstream("/proc/self/clear_refs") << "5";
  return StatusKib("VmRSS");
}

// How far the peak rose above `base` (0 when it did not: the kernel syncs
// per-thread RSS counters lazily, so the reset peak can sit a few pages
// below the VmRSS read just after it, and an unsigned difference would wrap).
uint64_t PeakGrowth(uint64_t base) {
  const uint64_t peak = StatusKib("VmHWM");
  return peak > base ? peak - base : 0;
}

TEST(SnapshotMemoryTest, LargeIndexSnapshotsStreamInBoundedMemory) {
  ASSERT_TRUE(InitCrypto().ok());
  TempDir tmp;
  auto index = Index::Open(tmp.path() + "/index", Index::Options{});
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  auto store = LocalStore::Open(tmp.path() + "/store");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  // 200,000 one-chunk files: a snapshot of about 45 MiB.
  constexpr int kFiles = 200000;
  for (int from = 0; from < kFiles; from += 10000) {
    IndexBatch b;
    for (int i = from; i < from + 10000; ++i) {
      InodeAttr a;
      a.ino = 100 + static_cast<uint64_t>(i);
      a.mode = S_IFREG | 0644;
      a.size = 1 << 20;
      b.PutInode(a);
      b.PutDirEntry(kRootIno, "a-long-enough-file-name-" + std::to_string(i),
                    a.ino, a.mode);
      ChunkRef r{};
      r.address = MakeAddress(static_cast<uint32_t>(i));
      r.key = ChunkKey(MakeAddress(1000000 + static_cast<uint32_t>(i)));
      r.length = 1 << 20;
      b.PutChunk(a.ino, 0, r);
    }
    WAVEFS_ASSERT_OK((*index)->Commit(&b, false));
  }
  SnapshotKey key = DeriveSnapshotKey(Secret{});
  StoreIdBytes sid{};
  constexpr uint64_t kBoundKib = 24 << 10;

  uint64_t base = ResetPeak();
  auto t = TakeSnapshot(index->get(), store->get(), key, sid, 10, tmp.path());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  uint64_t grew = PeakGrowth(base);
  std::printf("snapshot of %llu bytes: peak RSS grew %llu KiB\n",
              static_cast<unsigned long long>(t->bytes),
              static_cast<unsigned long long>(grew));
  EXPECT_GT(t->bytes, 40ull << 20);
  EXPECT_LT(grew, kBoundKib) << "taking the snapshot";

  base = ResetPeak();
  uint64_t named = 0;
  WAVEFS_ASSERT_OK(ForEachSnapshotAddress(store->get(), key, tmp.path(),
                                          [&](const Address&) { ++named; }));
  grew = PeakGrowth(base);
  std::printf("reading it for gc: peak RSS grew %llu KiB\n",
              static_cast<unsigned long long>(grew));
  EXPECT_EQ(named, static_cast<uint64_t>(kFiles));
  EXPECT_LT(grew, kBoundKib) << "reading the snapshot for gc";
  WAVEFS_ASSERT_OK((*index)->Close());
  index->reset();

  base = ResetPeak();
  auto r = RestoreIndex(store->get(), key, sid, tmp.path() + "/restored", "");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  grew = PeakGrowth(base);
  std::printf("restoring it: peak RSS grew %llu KiB\n",
              static_cast<unsigned long long>(grew));
  EXPECT_EQ(r->chunk_refs, static_cast<uint64_t>(kFiles));
  // RocksDB's memtables (2 x 4 MiB) and block cache come on top here.
  EXPECT_LT(grew, kBoundKib + (12 << 10)) << "restoring the snapshot";
}

}  // namespace
}  // namespace wavefs
