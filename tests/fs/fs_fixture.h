// FsTest: the fixture every fs/ unit test uses. A real index and spill in
// a temporary directory, an in-memory chunk store behind a fault-injecting
// store (no faults unless a test adds them) behind a counting store, and a
// running uploader. "Remount" means tearing all of that down
// (draining uploads) and opening it again over the same directories and
// store.
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../store/store_test_util.h"
#include "chunker/crypto.h"
#include "chunker/data_map.h"
#include "fs/errno_map.h"
#include "fs/filesystem.h"
#include "store/counting_store.h"
#include "store/fault_store.h"
#include "store/index.h"
#include "store/memory_store.h"
#include "store/recovery.h"
#include "store/spill.h"
#include "store/uploader.h"

namespace wavefs {
namespace fs_testing {

using testing_util::WaitFor;

using testing_util::TempDir;
using namespace std::chrono_literals;

inline constexpr uint64_t kC = kChunkSize;
inline constexpr uint32_t kFileMode = S_IFREG | 0644;
inline constexpr uint32_t kDirMode = S_IFDIR | 0755;

inline std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&out[i], &v, 8);
  }
  for (; i < size; ++i) out[i] = static_cast<char>(rng());
  return out;
}

// Compares two byte strings without printing megabytes on failure.
inline ::testing::AssertionResult SameBytes(const std::string& want,
                                            const std::string& got) {
  if (want == got) return ::testing::AssertionSuccess();
  const size_t n = std::min(want.size(), got.size());
  size_t first = 0;
  while (first < n && want[first] == got[first]) ++first;
  return ::testing::AssertionFailure()
         << "sizes " << want.size() << " (want) vs " << got.size()
         << " (got); first difference at byte " << first << " (chunk "
         << first / kC << ", offset " << first % kC << " in it)";
}

inline bool AllZero(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == 0; });
}

class FsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitCrypto().ok());
    secret_.fill(0x5a);
    tmp_ = std::make_unique<TempDir>();
    auto memory = MakeMemoryStore();
    memory_ = memory.get();
    auto faults = std::make_unique<FaultStore>(std::move(memory));
    faults_ = faults.get();
    store_ = std::make_unique<CountingStore>(std::move(faults));
    Mount();
  }
  // The store under the decorators (tests may substitute one).
  virtual std::unique_ptr<MemoryStore> MakeMemoryStore() {
    return std::make_unique<MemoryStore>();
  }
  virtual Uploader::Options UploaderOptions() {
    Uploader::Options uo;
    uo.initial_backoff = 1ms;
    uo.max_backoff = 20ms;
    return uo;
  }
  void TearDown() override {
    if (fs_) Unmount(/*drain=*/false);
    store_.reset();
    tmp_.reset();
  }

  static FsOptions TestOptions() {
    FsOptions o;
    o.spill_reserve_bytes = 0;
    o.space_wait = 10s;
    return o;
  }

  void Mount(FsOptions options = TestOptions()) {
    auto index = Index::Open(*tmp_ / "index", Index::Options{});
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    index_ = std::move(*index);
    auto spill = Spill::Open(*tmp_ / "spill");
    ASSERT_TRUE(spill.ok()) << spill.status().ToString();
    spill_ = std::move(*spill);
    // As the daemon does at start-up (fs/mount.cc).
    auto recovered =
        RecoverAtStart(index_.get(), spill_.get(), kNewestChunkFormat);
    ASSERT_TRUE(recovered.ok()) << recovered.status().ToString();
    uploader_ = std::make_unique<Uploader>(index_.get(), spill_.get(),
                                           store_.get(), UploaderOptions());
    uploader_->Start();
    fs_ = std::make_unique<Filesystem>(index_.get(), spill_.get(), store_.get(),
                                       uploader_.get(), secret_, options,
                                       store_.get());
  }
  // What the daemon does at unmount (fs/mount.cc), in its order: commit
  // open files, drain, destroy the Filesystem, stop the uploader, close.
  void Unmount(bool drain = true) {
    WAVEFS_EXPECT_OK(fs_->CommitAll());
    if (drain) WAVEFS_EXPECT_OK(uploader_->Drain(60s, nullptr));
    Stop();
  }
  // The daemon killed: nothing is committed or drained on the way down.
  void KillAndMount(FsOptions options = TestOptions()) {
    Stop();
    Mount(options);
  }
  // Destroys the Filesystem, stops the uploader, closes index and spill.
  void Stop() {
    fs_.reset();
    uploader_->Stop();
    uploader_.reset();
    WAVEFS_EXPECT_OK(index_->Close());
    index_.reset();
    spill_.reset();
  }
  void Remount(FsOptions options = TestOptions()) {
    Unmount();
    Mount(options);
  }
  void Drain() { WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr)); }

  uint64_t Create(const std::string& name, uint64_t parent = kRootIno,
                  uint32_t mode = kFileMode) {
    auto a = fs_->MakeNode(parent, name, mode, 0, 1000, 1000);
    EXPECT_TRUE(a.ok()) << name << ": " << a.status().ToString();
    return a.ok() ? a->ino : 0;
  }
  std::unique_ptr<FileHandle> OpenH(uint64_t ino) {
    auto h = fs_->Open(ino);
    EXPECT_TRUE(h.ok()) << h.status().ToString();
    return h.ok() ? std::move(*h) : nullptr;
  }
  // Writes in FUSE-like pieces; fails the test on a short or failed write.
  // writeback: as pages the kernel's writeback cache sends.
  void WriteAt(FileHandle* h, uint64_t offset, const std::string& data,
               size_t piece = 1 << 20, bool writeback = false) {
    for (size_t done = 0; done < data.size();) {
      const size_t n = std::min(piece, data.size() - done);
      auto r = fs_->Write(h, offset + done, data.data() + done, n, writeback);
      ASSERT_TRUE(r.ok()) << "write at " << offset + done << ": "
                          << r.status().ToString();
      ASSERT_EQ(*r, n) << "short write at " << offset + done;
      done += n;
    }
  }
  // Reads [offset, offset + size) in pieces (short at end of file).
  std::string ReadAt(FileHandle* h, uint64_t offset, size_t size,
                     size_t piece = (1 << 20) + 3) {
    std::string out;
    std::string buf;
    while (out.size() < size) {
      const size_t n = std::min(piece, size - out.size());
      buf.assign(n, '\x7e');
      auto r = fs_->Read(h, offset + out.size(), n, buf.data());
      EXPECT_TRUE(r.ok()) << "read at " << offset + out.size() << ": "
                          << r.status().ToString();
      if (!r.ok() || *r == 0) break;
      out.append(buf.data(), *r);
      if (*r < n) break;
    }
    return out;
  }
  uint64_t WriteFile(const std::string& name, const std::string& data,
                     uint64_t parent = kRootIno) {
    const uint64_t ino = Create(name, parent);
    auto h = OpenH(ino);
    if (!h) return ino;
    WriteAt(h.get(), 0, data);
    WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
    return ino;
  }
  std::string ReadFile(uint64_t ino) {
    auto attr = fs_->GetAttr(ino);
    EXPECT_TRUE(attr.ok()) << attr.status().ToString();
    if (!attr.ok()) return "<no such inode>";
    auto h = OpenH(ino);
    if (!h) return "<cannot open>";
    std::string s = ReadAt(h.get(), 0, attr->size + 100);
    WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
    return s;
  }
  uint64_t SizeOf(uint64_t ino) {
    auto a = fs_->GetAttr(ino);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? a->size : ~0ull;
  }
  Status Truncate(uint64_t ino, uint64_t size) {
    AttrChange c;
    c.size = size;
    auto r = fs_->SetAttr(ino, c);
    return r.ok() ? Status::Ok() : r.status();
  }
  std::vector<std::string> List(uint64_t dir, const std::string& after = "") {
    std::vector<std::string> names;
    Status st = fs_->ReadDir(dir, after, [&](const DirEntry& e) {
      names.push_back(e.name);
      return true;
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return names;
  }
  Code LookupCode(uint64_t parent, const std::string& name) {
    return fs_->Lookup(parent, name).status().code();
  }
  // Rounds of one small write to each of six chunks, chunk after chunk:
  // with two buffers each write evicts a chunk, which the next round
  // brings back. Each chunk ends up over 64 KiB, so it is staged in the
  // spill, not the index. Returns what the file holds.
  std::string WriteAllOver(FileHandle* h, std::string model, int rounds,
                           uint64_t seed) {
    for (int r = 0; r < rounds; ++r) {
      for (uint64_t c = 0; c < 6; ++c) {
        const uint64_t at = c * kC + 200000 + r * 7919;
        const std::string piece = RandomBytes(1000, seed + r * 6 + c);
        WriteAt(h, at, piece);
        if (model.size() < at + piece.size())
          model.resize(at + piece.size(), '\0');
        model.replace(at, piece.size(), piece);
      }
    }
    return model;
  }
  // A figure of fs_->StatsText (`wavefs status`).
  uint64_t Stat(const std::string& key) {
    const std::string text = fs_->StatsText("");
    const size_t at = text.find("\n" + key + "=");
    EXPECT_NE(at, std::string::npos) << key << " is not in the stats";
    if (at == std::string::npos) return ~0ull;
    return std::stoull(text.substr(at + key.size() + 2));
  }
  size_t SpillCount() {
    size_t n = 0;
    WAVEFS_EXPECT_OK(spill_->List([&](const Address&) { ++n; }));
    return n;
  }

  Secret secret_{};
  std::unique_ptr<TempDir> tmp_;
  MemoryStore* memory_ = nullptr;  // owned by faults_
  FaultStore* faults_ = nullptr;   // owned by store_
  std::unique_ptr<CountingStore> store_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<Spill> spill_;
  std::unique_ptr<Uploader> uploader_;
  std::unique_ptr<Filesystem> fs_;
};

}  // namespace fs_testing
}  // namespace wavefs
