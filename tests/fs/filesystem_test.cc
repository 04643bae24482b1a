// Tests of wavefs's file semantics through fs::Filesystem, without a FUSE
// mount (the fixture is in fs_fixture.h).
#include "fs/filesystem.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include "fs_fixture.h"

namespace wavefs {
namespace {

using namespace fs_testing;  // NOLINT
using namespace std::chrono_literals;
using testing_util::TempDir;
using testing_util::WaitFor;

// ------------------------------------------------------------ basic data

TEST_F(FsTest, WriteThenReadBackVariousSizes) {
  const std::vector<uint64_t> sizes = {
      0, 1, kC - 1, kC, kC + 1, 3 * kC + 5, 4096, 2 * kC - 7, 100000};
  std::vector<std::pair<uint64_t, std::string>> files;
  for (uint64_t size : sizes) {
    SCOPED_TRACE("size " + std::to_string(size));
    const std::string data = RandomBytes(size, size + 1);
    const uint64_t ino = Create("f" + std::to_string(size));
    auto h = OpenH(ino);
    ASSERT_TRUE(h);
    WriteAt(h.get(), 0, data);
    // Through the same handle, before any flush: from the dirty buffers.
    EXPECT_TRUE(SameBytes(data, ReadAt(h.get(), 0, size + 10)));
    WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
    EXPECT_TRUE(SameBytes(data, ReadAt(h.get(), 0, size + 10)));
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
    EXPECT_EQ(SizeOf(ino), size);
    EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
    files.emplace_back(ino, data);
  }
  Remount();
  for (const auto& [ino, data] : files) {
    SCOPED_TRACE("size " + std::to_string(data.size()));
    EXPECT_EQ(SizeOf(ino), data.size());
    EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
  }
  EXPECT_EQ(SpillCount(), 0u);
}

// The kernel's writeback cache sends a file's pages in any order. A write
// that reaches a chunk's end before its start arrived must not seal the
// chunk early: it would be sealed, staged and stored twice (once with its
// start missing). In-order writes still seal each chunk as it fills. An
// application's writes out of order are a random writer's, which may come
// back to the chunk: not sealed early even once they cover it (the
// kernel's writeback pieces are: PageOutTest.PiecesALittleOutOfOrder...).
TEST_F(FsTest, OnlyInOrderWritesSealAChunkEarly) {
  std::string data = RandomBytes(2 * kC, 21);
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  // Chunk 0: the second half first (reaching its end), then the first half,
  // then a patch in its middle.
  WriteAt(h.get(), kC / 2, data.substr(kC / 2, kC / 2));
  WriteAt(h.get(), 0, data.substr(0, kC / 2));
  const std::string patch = RandomBytes(1000, 22);
  data.replace(kC / 3, patch.size(), patch);
  WriteAt(h.get(), kC / 3, patch);
  // Chunk 1: in order.
  WriteAt(h.get(), kC, data.substr(kC));
  WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Drain();
  EXPECT_EQ(memory_->object_count(), 2u) << "each chunk is stored once, whole";
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// st_blocks (InodeAttr::stored_bytes from StatAttr) counts the bytes in
// chunks that hold data: du shows it, and cp looks for holes only in a file
// with fewer blocks than its size. A file with uncommitted changes is
// counted from its buffers and marked uncached (sealing may still turn a
// buffer of zeros into a hole); a file of one chunk or less counts its
// size (no scan in the small-file paths).
TEST_F(FsTest, StatAttrCountsStoredBytesNotHoles) {
  auto stored = [&](uint64_t ino) {
    auto a = fs_->StatAttr(ino);
    EXPECT_TRUE(a.ok());
    return a.ok() ? a->stored_bytes : std::optional<uint64_t>();
  };
  const uint64_t small = WriteFile("small", std::string(1000, '\0'));
  EXPECT_EQ(stored(small), std::nullopt);

  const uint64_t ino = Create("f");
  AttrChange grow;
  grow.size = 10 * kC;
  WAVEFS_ASSERT_OK(fs_->SetAttr(ino, grow).status());
  EXPECT_EQ(stored(ino), 0u);
  EXPECT_FALSE(fs_->StatAttr(ino)->uncached);
  EXPECT_EQ(fs_->GetAttr(ino)->stored_bytes, std::nullopt)
      << "GetAttr does not scan";

  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  WriteAt(h.get(), 2 * kC, RandomBytes(1000, 81));  // chunk 2: dirty
  WriteAt(h.get(), 9 * kC, RandomBytes(kC, 82));    // chunk 9: in order, whole
  auto open = fs_->StatAttr(ino);
  ASSERT_TRUE(open.ok());
  EXPECT_EQ(open->stored_bytes, 1000u + kC);
  EXPECT_TRUE(open->uncached);
  WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(stored(ino), 1000u + kC);
  EXPECT_FALSE(fs_->StatAttr(ino)->uncached);

  // Zeros over chunk 2's data, and a punched chunk 9: holes once sealed.
  h = OpenH(ino);
  ASSERT_TRUE(h);
  WriteAt(h.get(), 2 * kC, std::string(1000, '\0'));
  WAVEFS_ASSERT_OK(
      fs_->Fallocate(h.get(), kFallocPunchHole | kFallocKeepSize, 9 * kC, kC));
  WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(stored(ino), 0u);

  // Data past a truncate does not count; what is left after it does.
  h = OpenH(ino);
  ASSERT_TRUE(h);
  WriteAt(h.get(), kC, RandomBytes(3 * kC, 83));  // chunks 1-3
  WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  AttrChange cut;
  cut.size = 2 * kC + 100;
  WAVEFS_ASSERT_OK(fs_->SetAttr(ino, cut).status());
  EXPECT_EQ(stored(ino), kC + 100);
  Remount();
  EXPECT_EQ(stored(ino), kC + 100);
}

TEST_F(FsTest, ReadPastEndIsShortAndAtEndIsEmpty) {
  const std::string data = RandomBytes(kC + 100, 7);
  const uint64_t ino = WriteFile("f", data);
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  std::string buf(1000, '\0');
  auto r = fs_->Read(h.get(), kC + 50, 1000, buf.data());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 50u);
  EXPECT_EQ(buf.substr(0, 50), data.substr(kC + 50));
  auto at_end = fs_->Read(h.get(), kC + 100, 10, buf.data());
  ASSERT_TRUE(at_end.ok());
  EXPECT_EQ(*at_end, 0u);
  auto beyond = fs_->Read(h.get(), 10 * kC, 10, buf.data());
  ASSERT_TRUE(beyond.ok());
  EXPECT_EQ(*beyond, 0u);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
}

TEST_F(FsTest, OverwriteInTheMiddleOfCommittedChunks) {
  std::string model = RandomBytes(3 * kC, 11);
  const uint64_t ino = WriteFile("f", model);
  Remount();  // the chunks are now only in the store
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  // Straddles chunks 0 and 1; another inside chunk 2.
  const std::string a = RandomBytes(300000, 12);
  const std::string b = RandomBytes(10, 13);
  WriteAt(h.get(), kC - 100000, a);
  WriteAt(h.get(), 2 * kC + 5, b);
  model.replace(kC - 100000, a.size(), a);
  model.replace(2 * kC + 5, b.size(), b);
  EXPECT_TRUE(SameBytes(model, ReadAt(h.get(), 0, model.size())));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(SizeOf(ino), 3 * kC);
  Remount();
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

// A randomized model test: write/truncate/read on one file, with flushes,
// releases and remounts in between, every read compared with a string.
struct ModelParam {
  size_t buffers;
  ChunkFormat format;  // format 1 stores must keep working too
};
class FsModelTest : public FsTest,
                    public ::testing::WithParamInterface<ModelParam> {};

TEST_P(FsModelTest, RandomOpsMatchAStringModel) {
  FsOptions options = TestOptions();
  options.dirty_buffers = GetParam().buffers;
  options.chunk_format = GetParam().format;
  options.cache_chunks = 2;
  Unmount();
  Mount(options);

  std::mt19937_64 rng(1234 + GetParam().buffers +
                      100 * static_cast<int>(GetParam().format));
  auto uniform = [&](uint64_t lo, uint64_t hi) {  // inclusive
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };
  const uint64_t max_end = 2 * kC + kC / 2;
  std::string model;
  const uint64_t ino = Create("model");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  int reads = 0;
  for (int op = 0; op < 300; ++op) {
    SCOPED_TRACE("op " + std::to_string(op));
    const uint64_t kind = uniform(0, 99);
    if (kind < 45) {
      // Mostly small writes, some spanning a chunk boundary.
      uint64_t len = uniform(0, 9) < 8 ? uniform(1, 70000) : uniform(1, kC);
      // A third of them start just before a chunk boundary.
      uint64_t off = uniform(0, 2) == 0 ? uniform(1, 2) * kC - uniform(0, 5000)
                                        : uniform(0, max_end - 1);
      len = std::min(len, max_end - off);
      const std::string data = RandomBytes(len, rng());
      WriteAt(h.get(), off, data, 128 * 1024);
      if (model.size() < off + len) model.resize(off + len, '\0');
      model.replace(off, len, data);
    } else if (kind < 55) {
      const uint64_t size =
          uniform(0, 9) < 3 ? uniform(0, 2) * kC : uniform(0, max_end);
      WAVEFS_ASSERT_OK(Truncate(ino, size));
      model.resize(size, '\0');
    } else if (kind < 85) {
      const uint64_t off = uniform(0, model.size() + 1000);
      const uint64_t len = uniform(1, kC + 1000);
      const std::string want =
          off < model.size() ? model.substr(off, len) : std::string();
      ASSERT_TRUE(SameBytes(want, ReadAt(h.get(), off, len)))
          << "read " << len << " at " << off;
      ++reads;
    } else if (kind < 92) {
      WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
    } else if (kind < 98) {
      WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
      h = OpenH(ino);
      ASSERT_TRUE(h);
    } else {
      WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
      Remount(options);
      h = OpenH(ino);
      ASSERT_TRUE(h);
    }
    ASSERT_EQ(SizeOf(ino), model.size());
  }
  ASSERT_GT(reads, 50);
  EXPECT_TRUE(SameBytes(model, ReadAt(h.get(), 0, model.size() + 1)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Remount(options);
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

INSTANTIATE_TEST_SUITE_P(
    DirtyBuffers, FsModelTest,
    ::testing::Values(ModelParam{4, ChunkFormat::kSegmentedAes},
                      ModelParam{2, ChunkFormat::kSegmentedAes},
                      ModelParam{4, ChunkFormat::kSegmented},
                      ModelParam{4, ChunkFormat::kWhole}),
    [](const auto& info) {
      return "buffers" + std::to_string(info.param.buffers) + "_format" +
             std::to_string(static_cast<int>(info.param.format));
    });

// ------------------------------------------------------ truncate and holes

TEST_F(FsTest, TruncateShrinkThenExtendReadsZeros) {
  const std::string data = RandomBytes(3 * kC, 21);
  // Inside a chunk, on a chunk boundary, and down to nothing; each on a
  // committed-and-uploaded file and on one still in dirty buffers.
  for (const uint64_t cut : {kC + kC / 2, kC, uint64_t{0}, uint64_t{1}}) {
    for (const bool uploaded : {true, false}) {
      SCOPED_TRACE("cut " + std::to_string(cut) +
                   (uploaded ? " uploaded" : " dirty"));
      const std::string name =
          "f" + std::to_string(cut) + (uploaded ? "u" : "d");
      const uint64_t ino = Create(name);
      auto h = OpenH(ino);
      ASSERT_TRUE(h);
      WriteAt(h.get(), 0, data);
      if (uploaded) {
        WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
        Drain();
      }
      WAVEFS_ASSERT_OK(Truncate(ino, cut));
      EXPECT_EQ(SizeOf(ino), cut);
      WAVEFS_ASSERT_OK(Truncate(ino, 3 * kC));
      std::string want = data.substr(0, cut);
      want.resize(3 * kC, '\0');
      EXPECT_TRUE(SameBytes(want, ReadAt(h.get(), 0, 3 * kC)));
      WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
      EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
    }
  }
  Remount();
  for (const uint64_t cut : {kC + kC / 2, kC, uint64_t{0}, uint64_t{1}}) {
    for (const bool uploaded : {true, false}) {
      auto e = fs_->Lookup(kRootIno,
                           "f" + std::to_string(cut) + (uploaded ? "u" : "d"));
      ASSERT_TRUE(e.ok());
      std::string want = data.substr(0, cut);
      want.resize(3 * kC, '\0');
      EXPECT_TRUE(SameBytes(want, ReadFile(e->ino))) << "cut " << cut;
    }
  }
}

TEST_F(FsTest, ExtendingWriteAfterShrinkLeavesZerosInTheGap) {
  const std::string data = RandomBytes(2 * kC, 22);
  const uint64_t ino = WriteFile("f", data);
  Remount();
  WAVEFS_ASSERT_OK(Truncate(ino, 100));
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  const std::string tail = RandomBytes(1000, 23);
  WriteAt(h.get(), kC + 500, tail);
  std::string want = data.substr(0, 100);
  want.resize(kC + 500, '\0');
  want += tail;
  EXPECT_TRUE(SameBytes(want, ReadAt(h.get(), 0, want.size() + 1)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Remount();
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
}

TEST_F(FsTest, SparseWriteFarPastEndReadsZerosAndStoresNoZeroChunks) {
  const uint64_t ino = Create("sparse");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  const std::string tail = RandomBytes(100, 31);
  const uint64_t off = 10 * kC + 7;
  WriteAt(h.get(), off, tail);
  EXPECT_EQ(SizeOf(ino), off + 100);
  EXPECT_TRUE(AllZero(ReadAt(h.get(), 0, kC)));
  EXPECT_TRUE(AllZero(ReadAt(h.get(), 5 * kC - 10, 20)));
  EXPECT_TRUE(AllZero(ReadAt(h.get(), 10 * kC, 7)));
  EXPECT_EQ(ReadAt(h.get(), off, 200), tail);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Drain();
  EXPECT_EQ(memory_->object_count(), 1u) << "only the data chunk is stored";

  // Explicit zeros, a full chunk and a partial one, are holes as well.
  const uint64_t puts = store_->puts();
  h = OpenH(ino);
  ASSERT_TRUE(h);
  WriteAt(h.get(), 2 * kC, std::string(kC, '\0'));
  WriteAt(h.get(), 5 * kC + 3, std::string(1000, '\0'));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  // Growing the file by truncate stores nothing either.
  WAVEFS_ASSERT_OK(Truncate(ino, 20 * kC));
  Drain();
  EXPECT_EQ(memory_->object_count(), 1u);
  EXPECT_EQ(store_->puts(), puts);
  EXPECT_EQ(SpillCount(), 0u);

  Remount();
  std::string want(20 * kC, '\0');
  want.replace(off, tail.size(), tail);
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
  auto map = fs_->GetDataMap(ino);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  for (const auto& [i, ref] : map->chunks) {
    if (i != 10) {
      EXPECT_TRUE(ref.hole) << "chunk " << i;
    }
  }
}

// ------------------------------------------------- remount and lazy reads

TEST_F(FsTest, RemountReadsTheSameBytes) {
  const std::string a = RandomBytes(2 * kC + 12345, 41);
  const std::string b = RandomBytes(777, 42);
  const uint64_t dir = Create("dir", kRootIno, kDirMode);
  const uint64_t ia = WriteFile("a", a);
  const uint64_t ib = WriteFile("b", b, dir);
  auto link = fs_->MakeNode(dir, "link", S_IFLNK | 0777, 0, 1000, 1000, "../a");
  ASSERT_TRUE(link.ok());
  // A file left open with unflushed data: the unmount commits it.
  const std::string c = RandomBytes(kC + 3, 43);
  const uint64_t ic = Create("c");
  auto hc = OpenH(ic);
  ASSERT_TRUE(hc);
  WriteAt(hc.get(), 0, c);
  Unmount();
  hc.reset();
  Mount();

  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_EQ(index_->pending_chunks(), 0u);
  auto la = fs_->Lookup(kRootIno, "a");
  ASSERT_TRUE(la.ok());
  EXPECT_EQ(la->ino, ia);
  EXPECT_EQ(la->size, a.size());
  EXPECT_TRUE(SameBytes(a, ReadFile(ia)));
  auto ld = fs_->Lookup(kRootIno, "dir");
  ASSERT_TRUE(ld.ok());
  auto lb = fs_->Lookup(ld->ino, "b");
  ASSERT_TRUE(lb.ok());
  EXPECT_EQ(lb->ino, ib);
  EXPECT_TRUE(SameBytes(b, ReadFile(ib)));
  EXPECT_TRUE(SameBytes(c, ReadFile(ic)));
  auto target = fs_->ReadLink(link->ino);
  ASSERT_TRUE(target.ok());
  EXPECT_EQ(*target, "../a");
  EXPECT_EQ(List(kRootIno), (std::vector<std::string>{"a", "c", "dir"}));
  // New inodes after a remount do not reuse old numbers.
  const uint64_t id = Create("d");
  EXPECT_NE(id, ia);
  EXPECT_NE(id, ib);
  EXPECT_NE(id, ic);
  EXPECT_NE(id, link->ino);
  EXPECT_TRUE(SameBytes(a, ReadFile(ia)));
}

TEST_F(FsTest, LazyReadFetchesOnlyTheChunksTouched) {
  const std::string data = RandomBytes(16 * kC, 51);
  const uint64_t ino = WriteFile("big", data);
  Remount();
  EXPECT_EQ(memory_->object_count(), 16u);
  EXPECT_EQ(SpillCount(), 0u);
  const uint64_t before = store_->gets();
  const uint64_t before_bytes = store_->bytes_got();
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  const uint64_t off = 8 * kC - 512 * 1024;  // 1 MiB across chunks 7 and 8
  std::string buf(1 << 20, '\0');
  auto r = fs_->Read(h.get(), off, buf.size(), buf.data());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(*r, buf.size());
  EXPECT_TRUE(SameBytes(data.substr(off, buf.size()), buf));
  EXPECT_LE(store_->gets() - before, 2u);
  EXPECT_GE(store_->gets() - before, 1u);
  // Format 2: only the 64 KiB segments under the read came from the store
  // (1 MiB plus their tags), not two whole 4 MiB chunks.
  EXPECT_EQ(store_->bytes_got() - before_bytes, (1u << 20) + 16 * 16);
  // Reading it again gives the same bytes.
  r = fs_->Read(h.get(), off, buf.size(), buf.data());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(SameBytes(data.substr(off, buf.size()), buf));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
}

TEST_F(FsTest, SmallOverwriteAfterRemountFetchesOneChunk) {
  const std::string data = RandomBytes(16 * kC, 52);
  const uint64_t ino = WriteFile("big", data);
  Remount();
  const uint64_t gets = store_->gets();
  const uint64_t puts = store_->puts();
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  WriteAt(h.get(), 9 * kC + 10, "hello");
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Drain();
  EXPECT_LE(store_->gets() - gets, 1u);
  EXPECT_EQ(store_->puts() - puts, 1u) << "only the changed chunk is new";
  std::string want = data;
  want.replace(9 * kC + 10, 5, "hello");
  Remount();
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
}

// ------------------------------------------------------------------ dedup

TEST_F(FsTest, IdenticalFilesAreStoredOnce) {
  const std::string data = RandomBytes(3 * kC + 1000, 61);
  WriteFile("one", data);
  Drain();
  const size_t objects = memory_->object_count();
  EXPECT_EQ(objects, 4u);
  const uint64_t puts = store_->puts();
  const uint64_t two = WriteFile("two", data);
  Drain();
  EXPECT_EQ(memory_->object_count(), objects);
  EXPECT_EQ(store_->puts(), puts);
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_TRUE(SameBytes(data, ReadFile(two)));
  // Same content written before the first copy was uploaded.
  const uint64_t three = WriteFile("three", data);
  const uint64_t four = WriteFile("four", data);
  Drain();
  EXPECT_EQ(memory_->object_count(), objects);
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(three)));
  EXPECT_TRUE(SameBytes(data, ReadFile(four)));
}

TEST_F(FsTest, RepeatedChunksInsideAFileAreStoredOnce) {
  const std::string block = RandomBytes(kC, 62);
  const std::string data = block + block + block + block.substr(0, 10);
  const uint64_t ino = WriteFile("rep", data);
  Drain();
  EXPECT_EQ(memory_->object_count(), 2u);
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

TEST_F(FsTest, DifferentSecretsDoNotShareCiphertext) {
  const std::string data = RandomBytes(kC, 63);
  WriteFile("a", data);
  Drain();
  ASSERT_EQ(memory_->object_count(), 1u);
  Unmount();
  secret_.fill(0x17);
  // Same store, a fresh index (a different wavefs store sharing a bucket).
  std::filesystem::remove_all(*tmp_ / "index");
  Mount();
  WriteFile("a", data);
  Drain();
  EXPECT_EQ(memory_->object_count(), 2u);
}

// -------------------------------------------------------------- namespace

TEST_F(FsTest, MakeNodeLookupAndExists) {
  const uint64_t f = Create("file");
  const uint64_t d = Create("dir", kRootIno, kDirMode);
  ASSERT_NE(f, 0u);
  ASSERT_NE(d, 0u);
  EXPECT_NE(f, d);
  auto lf = fs_->Lookup(kRootIno, "file");
  ASSERT_TRUE(lf.ok());
  EXPECT_EQ(lf->ino, f);
  EXPECT_TRUE(S_ISREG(lf->mode));
  EXPECT_EQ(lf->size, 0u);
  EXPECT_EQ(lf->uid, 1000u);
  auto ld = fs_->Lookup(kRootIno, "dir");
  ASSERT_TRUE(ld.ok());
  EXPECT_TRUE(S_ISDIR(ld->mode));
  EXPECT_EQ(ld->nlink, 2u);
  auto root = fs_->GetAttr(kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->nlink, 3u) << "a subdirectory's '..' links the parent";

  for (uint32_t mode : {kFileMode, kDirMode}) {
    auto again = fs_->MakeNode(kRootIno, "file", mode, 0, 0, 0);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.status().code(), Code::kExists);
    EXPECT_EQ(ErrnoOf(again.status()), EEXIST);
    auto again_dir = fs_->MakeNode(kRootIno, "dir", mode, 0, 0, 0);
    EXPECT_EQ(again_dir.status().code(), Code::kExists);
  }
  // The failed creates changed nothing.
  EXPECT_EQ(fs_->Lookup(kRootIno, "file")->ino, f);
  EXPECT_EQ(List(kRootIno), (std::vector<std::string>{"dir", "file"}));

  EXPECT_EQ(LookupCode(kRootIno, "nope"), Code::kNotFound);
  EXPECT_EQ(LookupCode(d, "file"), Code::kNotFound);
  EXPECT_EQ(fs_->MakeNode(f, "x", kFileMode, 0, 0, 0).status().code(),
            Code::kNotDir);
  for (const char* bad : {"", ".", "..", "a/b"}) {
    EXPECT_FALSE(fs_->MakeNode(kRootIno, bad, kFileMode, 0, 0, 0).ok())
        << "'" << bad << "'";
  }
  EXPECT_EQ(fs_->MakeNode(kRootIno, std::string(256, 'n'), kFileMode, 0, 0, 0)
                .status()
                .code(),
            Code::kNameTooLong);
  EXPECT_TRUE(
      fs_->MakeNode(kRootIno, std::string(255, 'n'), kFileMode, 0, 0, 0).ok());
}

TEST_F(FsTest, UnlinkOfOpenFileKeepsDataUntilRelease) {
  const std::string data = RandomBytes(2 * kC + 500, 71);
  const uint64_t ino = WriteFile("f", data);
  Drain();
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "f"));
  EXPECT_EQ(LookupCode(kRootIno, "f"), Code::kNotFound);
  EXPECT_TRUE(List(kRootIno).empty());
  EXPECT_TRUE(SameBytes(data, ReadAt(h.get(), 0, data.size())));
  auto attr = fs_->GetAttr(ino);
  ASSERT_TRUE(attr.ok());
  EXPECT_EQ(attr->size, data.size());
  EXPECT_EQ(attr->nlink, 0u);
  // A new file with the same name is a different file.
  const std::string other = RandomBytes(100, 72);
  const uint64_t ino2 = WriteFile("f", other);
  EXPECT_NE(ino2, ino);
  EXPECT_TRUE(SameBytes(data, ReadAt(h.get(), 0, data.size())));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(fs_->GetAttr(ino).status().code(), Code::kNotFound);
  EXPECT_TRUE(SameBytes(other, ReadFile(ino2)));
  Remount();
  EXPECT_EQ(fs_->GetAttr(ino).status().code(), Code::kNotFound);
  EXPECT_TRUE(SameBytes(other, ReadFile(ino2)));
}

TEST_F(FsTest, UnlinkOfClosedFileRemovesIt) {
  const uint64_t ino = WriteFile("f", RandomBytes(1000, 73));
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "f"));
  EXPECT_EQ(LookupCode(kRootIno, "f"), Code::kNotFound);
  EXPECT_EQ(fs_->GetAttr(ino).status().code(), Code::kNotFound);
  EXPECT_EQ(fs_->Unlink(kRootIno, "f").code(), Code::kNotFound);
}

// Regression (fixed): data written through a handle whose file was unlinked is
// lost at the next flush: Commit() on an unlinked file clears `pending` (the
// sealed chunks) without keeping them anywhere, so reads through the still-open
// handle return the old bytes (or zeros) instead of what was just written.
// POSIX (and every local filesystem) keeps an unlinked open file fully
// usable; e.g. a program writing a temp file it already unlinked.
// Repro: open f, unlink f, write a full chunk of new data, flush, read it
// back through the handle -> old data.
TEST_F(FsTest, UnlinkedOpenFileStaysWritable) {
  const std::string old_data = RandomBytes(2 * kC, 74);
  const uint64_t ino = WriteFile("f", old_data);
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "f"));
  const std::string fresh = RandomBytes(2 * kC, 75);
  WriteAt(h.get(), 0, fresh);
  EXPECT_TRUE(SameBytes(fresh, ReadAt(h.get(), 0, fresh.size())))
      << "before flush";
  WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
  EXPECT_TRUE(SameBytes(fresh, ReadAt(h.get(), 0, fresh.size())))
      << "after flush";
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(fs_->GetAttr(ino).status().code(), Code::kNotFound);
}

TEST_F(FsTest, HardLinksShareDataAndCountLinks) {
  const std::string data = RandomBytes(kC + 77, 76);
  const uint64_t ino = WriteFile("a", data);
  const uint64_t d = Create("d", kRootIno, kDirMode);
  auto l = fs_->Link(ino, d, "b");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->ino, ino);
  EXPECT_EQ(l->nlink, 2u);
  EXPECT_EQ(fs_->Lookup(d, "b")->ino, ino);
  EXPECT_EQ(fs_->Link(ino, kRootIno, "a").status().code(), Code::kExists);
  auto to_dir = fs_->Link(d, kRootIno, "dlink");
  EXPECT_FALSE(to_dir.ok());
  EXPECT_EQ(ErrnoOf(to_dir.status()), EPERM);
  EXPECT_EQ(fs_->Link(ino, ino, "x").status().code(), Code::kNotDir);

  // A write through one name shows through the other.
  auto h = OpenH(fs_->Lookup(d, "b")->ino);
  ASSERT_TRUE(h);
  WriteAt(h.get(), 3, "LINKED");
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  std::string want = data;
  want.replace(3, 6, "LINKED");
  EXPECT_TRUE(SameBytes(want, ReadFile(fs_->Lookup(kRootIno, "a")->ino)));

  // Renaming one link onto the other changes nothing.
  WAVEFS_ASSERT_OK(fs_->Rename(d, "b", kRootIno, "a", 0));
  EXPECT_TRUE(fs_->Lookup(d, "b").ok());
  EXPECT_EQ(fs_->GetAttr(ino)->nlink, 2u);

  Remount();
  EXPECT_EQ(fs_->GetAttr(ino)->nlink, 2u);
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "a"));
  EXPECT_EQ(fs_->GetAttr(ino)->nlink, 1u);
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
  Remount();
  EXPECT_TRUE(SameBytes(want, ReadFile(fs_->Lookup(d, "b")->ino)));
  WAVEFS_ASSERT_OK(fs_->Unlink(d, "b"));
  EXPECT_EQ(fs_->GetAttr(ino).status().code(), Code::kNotFound);
}

TEST_F(FsTest, RenameOverOneOfTwoLinksKeepsTheOther) {
  const std::string data = RandomBytes(1000, 77);
  const uint64_t ino = WriteFile("a", data);
  ASSERT_TRUE(fs_->Link(ino, kRootIno, "b").ok());
  WriteFile("c", "new");
  WAVEFS_ASSERT_OK(fs_->Rename(kRootIno, "c", kRootIno, "a", 0));
  EXPECT_EQ(fs_->GetAttr(ino)->nlink, 1u);
  EXPECT_TRUE(SameBytes(data, ReadFile(fs_->Lookup(kRootIno, "b")->ino)));
  EXPECT_EQ(ReadFile(fs_->Lookup(kRootIno, "a")->ino), "new");
}

TEST_F(FsTest, RmdirAndUnlinkCheckTheKind) {
  const uint64_t d = Create("d", kRootIno, kDirMode);
  Create("inner", d);
  Create("file");
  EXPECT_EQ(fs_->Rmdir(kRootIno, "d").code(), Code::kNotEmpty);
  EXPECT_EQ(ErrnoOf(fs_->Rmdir(kRootIno, "d")), ENOTEMPTY);
  EXPECT_EQ(fs_->Rmdir(kRootIno, "file").code(), Code::kNotDir);
  EXPECT_EQ(fs_->Unlink(kRootIno, "d").code(), Code::kIsDir);
  EXPECT_EQ(fs_->Rmdir(kRootIno, "missing").code(), Code::kNotFound);
  EXPECT_TRUE(fs_->Lookup(kRootIno, "d").ok());
  EXPECT_EQ(List(d), std::vector<std::string>{"inner"});

  WAVEFS_ASSERT_OK(fs_->Unlink(d, "inner"));
  EXPECT_EQ(fs_->GetAttr(kRootIno)->nlink, 3u);
  WAVEFS_ASSERT_OK(fs_->Rmdir(kRootIno, "d"));
  EXPECT_EQ(LookupCode(kRootIno, "d"), Code::kNotFound);
  // A removed directory the kernel may still hold open keeps a record
  // without links (fstat works, as on ext4) until the next mount.
  EXPECT_EQ(fs_->GetAttr(d)->nlink, 0u);
  EXPECT_EQ(fs_->GetAttr(kRootIno)->nlink, 2u);
  EXPECT_EQ(List(kRootIno), std::vector<std::string>{"file"});
  Remount();
  EXPECT_EQ(fs_->GetAttr(d).status().code(), Code::kNotFound);
}

TEST_F(FsTest, RenameMovesAndReplaces) {
  const std::string a = RandomBytes(kC + 10, 81);
  const std::string b = RandomBytes(500, 82);
  const uint64_t ia = WriteFile("a", a);
  const uint64_t ib = WriteFile("b", b);

  // RENAME_NOREPLACE onto an existing name: nothing changes.
  Status st = fs_->Rename(kRootIno, "a", kRootIno, "b", 1);
  EXPECT_EQ(st.code(), Code::kExists);
  EXPECT_EQ(ErrnoOf(st), EEXIST);
  EXPECT_EQ(fs_->Lookup(kRootIno, "a")->ino, ia);
  EXPECT_EQ(fs_->Lookup(kRootIno, "b")->ino, ib);
  // RENAME_EXCHANGE swaps the two names; twice restores them. It needs
  // both names, and cannot be combined with RENAME_NOREPLACE.
  WAVEFS_ASSERT_OK(fs_->Rename(kRootIno, "a", kRootIno, "b", 2));
  EXPECT_EQ(fs_->Lookup(kRootIno, "a")->ino, ib);
  EXPECT_EQ(fs_->Lookup(kRootIno, "b")->ino, ia);
  EXPECT_TRUE(SameBytes(b, ReadFile(fs_->Lookup(kRootIno, "a")->ino)));
  WAVEFS_ASSERT_OK(fs_->Rename(kRootIno, "a", kRootIno, "b", 2));
  EXPECT_EQ(fs_->Lookup(kRootIno, "a")->ino, ia);
  EXPECT_EQ(fs_->Rename(kRootIno, "a", kRootIno, "none", 2).code(),
            Code::kNotFound);
  EXPECT_EQ(fs_->Rename(kRootIno, "a", kRootIno, "b", 3).code(),
            Code::kInvalid);
  EXPECT_EQ(fs_->GetAttr(ia)->nlink, 1u);

  // Plain rename replaces the target; the replaced file is gone.
  WAVEFS_ASSERT_OK(fs_->Rename(kRootIno, "a", kRootIno, "b", 0));
  EXPECT_EQ(LookupCode(kRootIno, "a"), Code::kNotFound);
  auto lb = fs_->Lookup(kRootIno, "b");
  ASSERT_TRUE(lb.ok());
  EXPECT_EQ(lb->ino, ia);
  EXPECT_TRUE(SameBytes(a, ReadFile(ia)));
  EXPECT_EQ(fs_->GetAttr(ib).status().code(), Code::kNotFound);
  EXPECT_EQ(List(kRootIno), std::vector<std::string>{"b"});

  // NOREPLACE onto a free name works; into a directory too.
  WAVEFS_ASSERT_OK(fs_->Rename(kRootIno, "b", kRootIno, "c", 1));
  const uint64_t d = Create("d", kRootIno, kDirMode);
  WAVEFS_ASSERT_OK(fs_->Rename(kRootIno, "c", d, "moved", 0));
  EXPECT_EQ(List(kRootIno), std::vector<std::string>{"d"});
  EXPECT_EQ(fs_->Lookup(d, "moved")->ino, ia);
  EXPECT_EQ(fs_->Rename(kRootIno, "c", kRootIno, "x", 0).code(),
            Code::kNotFound);

  Remount();
  EXPECT_EQ(List(kRootIno), std::vector<std::string>{"d"});
  EXPECT_TRUE(SameBytes(a, ReadFile(fs_->Lookup(d, "moved")->ino)));
}

TEST_F(FsTest, RenameChecksKindsOfSourceAndTarget) {
  const uint64_t d1 = Create("d1", kRootIno, kDirMode);
  const uint64_t d2 = Create("d2", kRootIno, kDirMode);
  const uint64_t full = Create("full", kRootIno, kDirMode);
  Create("inside", full);
  const uint64_t f = Create("f");

  Status dir_over_file = fs_->Rename(kRootIno, "d1", kRootIno, "f", 0);
  EXPECT_EQ(dir_over_file.code(), Code::kNotDir);
  EXPECT_EQ(ErrnoOf(dir_over_file), ENOTDIR);
  Status file_over_dir = fs_->Rename(kRootIno, "f", kRootIno, "d1", 0);
  EXPECT_EQ(file_over_dir.code(), Code::kIsDir);
  EXPECT_EQ(ErrnoOf(file_over_dir), EISDIR);
  EXPECT_EQ(fs_->Rename(kRootIno, "d1", kRootIno, "full", 0).code(),
            Code::kNotEmpty);
  // Into a file as if it were a directory.
  EXPECT_EQ(fs_->Rename(kRootIno, "d1", f, "x", 0).code(), Code::kNotDir);
  // Nothing moved.
  EXPECT_EQ(List(kRootIno),
            (std::vector<std::string>{"d1", "d2", "f", "full"}));
  EXPECT_EQ(fs_->Lookup(kRootIno, "d1")->ino, d1);
  EXPECT_EQ(fs_->Lookup(kRootIno, "f")->ino, f);

  // A directory over an empty directory replaces it.
  const uint32_t root_links = fs_->GetAttr(kRootIno)->nlink;
  WAVEFS_ASSERT_OK(fs_->Rename(kRootIno, "d1", kRootIno, "d2", 0));
  EXPECT_EQ(fs_->Lookup(kRootIno, "d2")->ino, d1);
  EXPECT_EQ(fs_->GetAttr(d2)->nlink, 0u);  // record goes at the next mount
  EXPECT_EQ(fs_->GetAttr(kRootIno)->nlink, root_links - 1);

  // Moving a directory between parents moves its '..' link.
  WAVEFS_ASSERT_OK(fs_->Rename(kRootIno, "d2", full, "sub", 0));
  EXPECT_EQ(fs_->GetAttr(kRootIno)->nlink, root_links - 2);
  EXPECT_EQ(fs_->GetAttr(full)->nlink, 3u);
  // Renaming onto itself is a no-op.
  WAVEFS_ASSERT_OK(fs_->Rename(full, "sub", full, "sub", 0));
  EXPECT_EQ(fs_->Lookup(full, "sub")->ino, d1);
}

TEST_F(FsTest, RenameOverAnOpenFileKeepsItReadable) {
  const std::string a = RandomBytes(100, 83);
  const std::string b = RandomBytes(kC + 100, 84);
  WriteFile("a", a);
  const uint64_t ib = WriteFile("b", b);
  auto h = OpenH(ib);
  ASSERT_TRUE(h);
  WAVEFS_ASSERT_OK(fs_->Rename(kRootIno, "a", kRootIno, "b", 0));
  EXPECT_TRUE(SameBytes(b, ReadAt(h.get(), 0, b.size())));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(fs_->GetAttr(ib).status().code(), Code::kNotFound);
  EXPECT_TRUE(SameBytes(a, ReadFile(fs_->Lookup(kRootIno, "b")->ino)));
}

TEST_F(FsTest, ReadDirIsSortedAndContinues) {
  const std::vector<std::string> names = {"zeta", "Alpha", "alpha", "beta",
                                          "_x",   "10",    "9",     "a.b"};
  for (const auto& n : names) Create(n);
  Create("sub", kRootIno, kDirMode);
  std::vector<std::string> want = names;
  want.push_back("sub");
  std::sort(want.begin(), want.end());
  EXPECT_EQ(List(kRootIno), want);
  EXPECT_EQ(
      List(kRootIno, "alpha"),
      std::vector<std::string>(
          std::upper_bound(want.begin(), want.end(), "alpha"), want.end()));
  // Stopping early, as a full readdir buffer does.
  std::vector<std::string> first;
  WAVEFS_ASSERT_OK(fs_->ReadDir(kRootIno, "", [&](const DirEntry& e) {
    first.push_back(e.name);
    return first.size() < 2;
  }));
  EXPECT_EQ(first, std::vector<std::string>(want.begin(), want.begin() + 2));
  // Entries carry the kind.
  WAVEFS_ASSERT_OK(fs_->ReadDir(kRootIno, "", [&](const DirEntry& e) {
    EXPECT_EQ(S_ISDIR(e.mode), e.name == "sub") << e.name;
    EXPECT_NE(e.ino, 0u);
    return true;
  }));
}

TEST_F(FsTest, SymlinkRoundTrips) {
  const std::string target = "../some/where with space/file.bin";
  auto l = fs_->MakeNode(kRootIno, "l", S_IFLNK | 0777, 0, 1000, 1000, target);
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_TRUE(S_ISLNK(l->mode));
  EXPECT_EQ(l->size, target.size());
  auto t = fs_->ReadLink(l->ino);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, target);
  const uint64_t f = Create("f");
  EXPECT_FALSE(fs_->ReadLink(f).ok());
  Remount();
  auto again = fs_->Lookup(kRootIno, "l");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(S_ISLNK(again->mode));
  EXPECT_EQ(*fs_->ReadLink(again->ino), target);
}

// -------------------------------------------------------------- data maps

TEST_F(FsTest, DataMapRoundTripsAndReadsTheFileFromTheStore) {
  const std::string c0 = RandomBytes(kC, 91);
  const std::string c2 = RandomBytes(kC, 92);
  const std::string tail = RandomBytes(100, 93);
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  WriteAt(h.get(), 3 * kC, tail);  // chunk 1 is never written
  WriteAt(h.get(), 0, c0);
  WriteAt(h.get(), 2 * kC, c2);
  const uint64_t size = 3 * kC + 100;
  // GetDataMap commits what is open first.
  auto map = fs_->GetDataMap(ino);
  ASSERT_TRUE(map.ok()) << map.status().ToString();
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(map->size, size);
  ASSERT_EQ(map->chunks.size(), ChunkCountFor(size) - 1);
  EXPECT_EQ(map->chunks[0].first, 0u);
  EXPECT_EQ(map->chunks[1].first, 2u);
  EXPECT_EQ(map->chunks[2].first, 3u);
  EXPECT_EQ(map->chunks[0].second.length, kC);
  EXPECT_EQ(map->chunks[2].second.length, 100u);
  for (const auto& [i, ref] : map->chunks) EXPECT_FALSE(ref.hole) << i;

  const std::string encoded = EncodeDataMap(*map);
  auto decoded = DecodeDataMap(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, *map);

  // The data map alone is enough to read the file back from the store.
  Drain();
  std::string rebuilt(size, '\0');
  for (const auto& [i, ref] : decoded->chunks) {
    std::vector<uint8_t> buf;
    WAVEFS_ASSERT_OK(memory_->Get(ref.address, &buf));
    WAVEFS_ASSERT_OK(
        OpenChunk(ref, kNewestChunkFormat, buf.data(), buf.size(), true));
    rebuilt.replace(i * kC, ref.length,
                    reinterpret_cast<const char*>(buf.data()), ref.length);
  }
  std::string want = c0 + std::string(kC, '\0') + c2 + tail;
  EXPECT_TRUE(SameBytes(want, rebuilt));

  // No plaintext reached the store.
  bool plaintext_seen = false;
  WAVEFS_ASSERT_OK(memory_->List([&](const Address& a) {
    std::vector<uint8_t> obj;
    if (!memory_->Get(a, &obj).ok()) return;
    const std::string s(obj.begin(), obj.end());
    if (s.find(c0.substr(1000, 64)) != std::string::npos ||
        s.find(tail.substr(0, 64)) != std::string::npos)
      plaintext_seen = true;
  }));
  EXPECT_FALSE(plaintext_seen);
}

TEST_F(FsTest, DataMapAfterTruncateNamesNoChunkPastTheEnd) {
  const uint64_t ino = WriteFile("f", RandomBytes(4 * kC, 94));
  WAVEFS_ASSERT_OK(Truncate(ino, kC + 5));
  auto map = fs_->GetDataMap(ino);
  ASSERT_TRUE(map.ok());
  EXPECT_EQ(map->size, kC + 5);
  ASSERT_EQ(map->chunks.size(), 2u);
  EXPECT_EQ(map->chunks[1].second.length, 5u);
  auto decoded = DecodeDataMap(EncodeDataMap(*map));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(*decoded, *map);
}

// ------------------------------------------------------------- corruption

TEST_F(FsTest, CorruptedStoreObjectIsAnErrorNeverWrongBytes) {
  const std::string data = RandomBytes(2 * kC, 101);
  const uint64_t ino = WriteFile("f", data);
  auto map = fs_->GetDataMap(ino);
  ASSERT_TRUE(map.ok());
  ASSERT_EQ(map->chunks.size(), 2u);
  Remount();  // uploaded, spill empty, nothing cached
  ASSERT_TRUE(memory_->CorruptObject(map->chunks[1].second.address));

  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  // The intact chunk still reads, and so do the intact 64 KiB segments of
  // the damaged one (CorruptObject flips a byte in the middle of the object:
  // segment 32, plaintext [kC + 2 MiB, kC + 2 MiB + 64 KiB)).
  EXPECT_TRUE(SameBytes(data.substr(0, 1000), ReadAt(h.get(), 0, 1000)));
  EXPECT_TRUE(
      SameBytes(data.substr(kC + 10, 1000), ReadAt(h.get(), kC + 10, 1000)));
  const uint64_t bad = kC + kC / 2;
  std::string buf(4096, '\0');
  for (int attempt = 0; attempt < 2; ++attempt) {  // not cached as good
    auto r = fs_->Read(h.get(), bad + 10, buf.size(), buf.data());
    ASSERT_FALSE(r.ok()) << "read of a corrupted chunk succeeded";
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().ToString();
    EXPECT_EQ(ErrnoOf(r.status()), EIO);
  }
  // A read spanning both chunks fails as a whole.
  auto span = fs_->Read(h.get(), bad - 10, 20, buf.data());
  EXPECT_FALSE(span.ok());
  // A partial overwrite of that chunk cannot merge with garbage.
  auto w = fs_->Write(h.get(), kC + 10, "xyz", 3);
  EXPECT_FALSE(w.ok()) << "wrote into a chunk that cannot be read";
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  // Cutting the damaged chunk off needs no read of it, and the file can
  // be written again past that point.
  WAVEFS_ASSERT_OK(Truncate(ino, kC));
  h = OpenH(ino);
  ASSERT_TRUE(h);
  const std::string fresh = RandomBytes(kC, 102);
  WriteAt(h.get(), kC, fresh);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_TRUE(SameBytes(data.substr(0, kC) + fresh, ReadFile(ino)));
}

TEST_F(FsTest, TransientGetFailureIsNotRemembered) {
  const std::string data = RandomBytes(kC + 10, 103);
  const uint64_t ino = WriteFile("f", data);
  Remount();
  faults_->FailGets(
      Status::Error(Code::kUnavailable, "store timed out", 0, true), 1);
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  std::string buf(100, '\0');
  auto r = fs_->Read(h.get(), 0, buf.size(), buf.data());
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(ErrnoOf(r.status()), EIO);
  r = fs_->Read(h.get(), 0, buf.size(), buf.data());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(buf, data.substr(0, 100));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
}

// Regression (fixed): a shrinking truncate that fails (here: the store cannot
// deliver the chunk holding the new end) still cuts the file. SetAttr drops the
// dirty/pending chunks past the new end and sets truncate_from before
// AcquireDirty fails; the size stays, so every chunk past the new end reads
// as zeros and the next commit deletes their refs for good. The user sees
// `truncate` fail with EIO and the file's tail silently zeroed.
// Repro: 3-chunk file, uploaded, remount, one failing get, truncate to
// kChunkSize + 100 -> error; read the file -> chunks 2.. are zeros.
TEST_F(FsTest, FailedTruncateLeavesTheFileAlone) {
  const std::string data = RandomBytes(3 * kC, 106);
  const uint64_t ino = WriteFile("f", data);
  Remount();
  faults_->FailGets(
      Status::Error(Code::kUnavailable, "store timed out", 0, true), 1);
  Status st = Truncate(ino, kC + 100);
  ASSERT_FALSE(st.ok()) << "truncate needed the unreachable chunk";
  EXPECT_EQ(ErrnoOf(st), EIO);
  EXPECT_EQ(SizeOf(ino), 3 * kC);
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

TEST_F(FsTest, FullSpillGivesNoSpaceAndHarmsNoCommittedFile) {
  const std::string data = RandomBytes(kC + 10, 104);
  const uint64_t ino = WriteFile("f", data);
  FsOptions full = TestOptions();
  full.spill_reserve_bytes = 1ull << 62;  // more than any disk has
  full.space_wait = 1s;
  Unmount();
  Mount(full);
  const uint64_t other = Create("g");
  auto h = OpenH(other);
  ASSERT_TRUE(h);
  // Over FsOptions::index_stage_max: its chunk would go to the spill.
  const std::string big = RandomBytes(100 << 10, 105);
  auto w = fs_->Write(h.get(), 0, big.data(), big.size());
  ASSERT_FALSE(w.ok()) << "a write staged into a full spill";
  EXPECT_EQ(ErrnoOf(w.status()), ENOSPC);
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(SizeOf(other), 0u);
  // A small file's chunk is staged in the index: it needs no spill space.
  const uint64_t small = WriteFile("s", "small");
  EXPECT_EQ(ReadFile(small), "small");
  // An overwrite of the committed file fails too and leaves it intact.
  h = OpenH(ino);
  ASSERT_TRUE(h);
  w = fs_->Write(h.get(), 100, "xyz", 3);
  EXPECT_FALSE(w.ok());
  EXPECT_TRUE(SameBytes(data, ReadAt(h.get(), 0, data.size())));
  (void)fs_->Release(std::move(h));
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
  h = OpenH(other);
  ASSERT_TRUE(h);
  WriteAt(h.get(), 0, "abc");
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(ReadFile(other), "abc");
  EXPECT_EQ(ReadFile(small), "small");
}

// After a failed commit drops a file's changes, the kernel's cached pages of
// it are stale: the next open must tell the kernel not to keep them.
TEST_F(FsTest, OpenAfterDroppedChangesDoesNotKeepTheKernelCache) {
  // The close must seal (not journal: tail_journal_test.cc has that case).
  FsOptions o = TestOptions();
  o.tail_journal = false;
  Remount(o);
  // Larger than FsOptions::index_stage_max: its seal goes to the spill.
  const std::string data = RandomBytes(100 << 10, 107);
  const uint64_t ino = WriteFile("f", data);
  std::vector<uint64_t> told;  // what the FUSE layer would invalidate
  fs_->SetDroppedListener([&](uint64_t i) { told.push_back(i); });
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->keep_cache);
  WriteAt(h.get(), 0, "changed");  // in a dirty buffer, not staged yet
  // Staging will fail: the spill directory is gone. The uploads of "f" are
  // drained first, or the uploader's removal of its staged file races
  // with remove_all (which then throws: "cannot remove all").
  Drain();
  std::filesystem::remove_all(*tmp_ / "spill");
  EXPECT_FALSE(fs_->Release(std::move(h)).ok());
  EXPECT_EQ(told, std::vector<uint64_t>{ino});
  fs_->SetDroppedListener(nullptr);
  std::filesystem::create_directories(*tmp_ / "spill");
  h = OpenH(ino);
  ASSERT_TRUE(h);
  EXPECT_FALSE(h->keep_cache) << "stale kernel pages would show 'changed'";
  EXPECT_TRUE(SameBytes(data, ReadAt(h.get(), 0, data.size())));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  h = OpenH(ino);
  ASSERT_TRUE(h);
  EXPECT_TRUE(h->keep_cache);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
}

// A write source that runs dry after `have` bytes, as a broken pipe from
// the kernel would (FuseBufSource in fs/fuse_ops.cc).
class DryingSource final : public WriteSource {
 public:
  DryingSource(const std::string& data, size_t have)
      : data_(data), have_(have) {}
  size_t CopyTo(uint8_t* dst, size_t n) override {
    const size_t k = std::min(n, have_ - std::min(have_, pos_));
    std::memcpy(dst, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  const std::string& data_;
  size_t have_;
  size_t pos_ = 0;
};

TEST_F(FsTest, AWriteWhoseSourceRunsDryIsShortOrEio) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  const std::string data = RandomBytes(kC + 4096, 7);
  // Dry after 100 bytes past the chunk boundary: a short write of what
  // came, across the boundary.
  DryingSource some(data, kC + 100);
  auto w = fs_->Write(h.get(), 0, &some, data.size());
  WAVEFS_ASSERT_OK(w.status());
  EXPECT_EQ(*w, kC + 100);
  EXPECT_TRUE(SameBytes(data.substr(0, kC + 100), ReadAt(h.get(), 0, 2 * kC)));
  // Dry at once: nothing written, EIO, the file as it was.
  DryingSource none(data, 0);
  w = fs_->Write(h.get(), kC + 100, &none, 10);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(ErrnoOf(w.status()), EIO);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(SizeOf(ino), kC + 100);
  EXPECT_TRUE(SameBytes(data.substr(0, kC + 100), ReadFile(ino)));
}

TEST_F(FsTest, WritePastTheSizeLimitIsTooBig) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  auto w = fs_->Write(h.get(), kMaxFileSize - 1, "ab", 2);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(ErrnoOf(w.status()), EFBIG);
  w = fs_->Write(h.get(), ~0ull - 1, "ab", 2);  // offset + size wraps
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(ErrnoOf(w.status()), EFBIG);
  EXPECT_EQ(SizeOf(ino), 0u);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
}

TEST_F(FsTest, FileStateGoesDirtyUploadingStored) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  WriteAt(h.get(), 0, RandomBytes(1000, 105));
  EXPECT_EQ(*fs_->FileState(ino), "dirty");
  const auto down = faults_->FailPuts(
      Status::Error(Code::kUnavailable, "store down", 0, true),
      FaultStore::kForever);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(*fs_->FileState(ino), "uploading");
  faults_->Lift(down);
  Drain();
  EXPECT_EQ(*fs_->FileState(ino), "stored");
}

// ---------------------------------------------------- memory and threads

TEST_F(FsTest, FewDirtyBuffersNonSequentialWriteReadsBackRight) {
  FsOptions options = TestOptions();
  options.dirty_buffers = 2;
  options.cache_chunks = 1;
  Unmount();
  Mount(options);

  const uint64_t size = 8 * kC;
  std::string model(size, '\0');
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  // 1 MiB pieces covering all 8 chunks, in a shuffled order, so most
  // writes land in a chunk that is not in one of the two buffers.
  std::vector<uint64_t> pieces;
  for (uint64_t off = 0; off < size; off += 1 << 20) pieces.push_back(off);
  std::mt19937_64 rng(111);
  std::shuffle(pieces.begin(), pieces.end(), rng);
  for (uint64_t off : pieces) {
    const std::string data = RandomBytes(1 << 20, off + 1);
    WriteAt(h.get(), off, data);
    model.replace(off, data.size(), data);
  }
  // Overlapping rewrites across chunk boundaries.
  for (int i = 0; i < 20; ++i) {
    const uint64_t off = rng() % (size - 300000);
    const std::string data = RandomBytes(300000, rng());
    WriteAt(h.get(), off, data, 64 * 1024);
    model.replace(off, data.size(), data);
  }
  EXPECT_TRUE(SameBytes(model, ReadAt(h.get(), 0, size)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  EXPECT_EQ(SizeOf(ino), size);
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
  Remount(options);
  EXPECT_TRUE(SameBytes(model, ReadFile(ino)));
}

TEST_F(FsTest, ConcurrentWritersOnFourFiles) {
  constexpr int kThreads = 4;
  const uint64_t size = 3 * kC + 4321;
  std::vector<uint64_t> inos;
  std::vector<std::string> contents;
  for (int t = 0; t < kThreads; ++t) {
    inos.push_back(Create("w" + std::to_string(t)));
    contents.push_back(RandomBytes(size, 200 + t));
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto h = fs_->Open(inos[t]);
      if (!h.ok()) {
        failures += 1;
        return;
      }
      std::vector<uint64_t> offs;
      for (uint64_t off = 0; off < size; off += 256 * 1024) offs.push_back(off);
      std::mt19937_64 rng(300 + t);
      std::shuffle(offs.begin(), offs.end(), rng);
      for (size_t k = 0; k < offs.size(); ++k) {
        const uint64_t off = offs[k];
        const size_t n = std::min<uint64_t>(256 * 1024, size - off);
        auto r = fs_->Write(h->get(), off, contents[t].data() + off, n);
        if (!r.ok() || *r != n) failures += 1;
        if (k % 16 == 15 && !fs_->Flush(h->get()).ok()) failures += 1;
        if (k % 7 == 0) {
          std::string buf(1000, '\0');
          auto rr = fs_->Read(h->get(), off, buf.size(), buf.data());
          if (!rr.ok() || buf.compare(0, std::min<size_t>(n, 1000),
                                      contents[t].substr(
                                          off, std::min<size_t>(n, 1000))) != 0)
            failures += 1;
        }
      }
      if (!fs_->Release(std::move(*h)).ok()) failures += 1;
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < kThreads; ++t)
    EXPECT_TRUE(SameBytes(contents[t], ReadFile(inos[t]))) << "file " << t;
  Remount();
  for (int t = 0; t < kThreads; ++t)
    EXPECT_TRUE(SameBytes(contents[t], ReadFile(inos[t]))) << "file " << t;
}

TEST_F(FsTest, ReaderAndFlusherRaceAWriterOnOneFile) {
  // Each byte is written once, so whatever lies below the writer's mark
  // must read back exactly, whether it sits in a dirty buffer, is being
  // sealed, is staged or was committed by a concurrent flush.
  const uint64_t size = 3 * kC + 999;
  const std::string content = RandomBytes(size, 130);
  const uint64_t ino = Create("f");
  auto wh = OpenH(ino);
  auto rh = OpenH(ino);
  ASSERT_TRUE(wh && rh);
  std::atomic<uint64_t> mark{0};
  std::atomic<bool> done{false};
  std::atomic<int> bad_reads{0}, errors{0};
  std::thread writer([&] {
    for (uint64_t off = 0; off < size; off += 200 * 1024) {
      const size_t n = std::min<uint64_t>(200 * 1024, size - off);
      auto r = fs_->Write(wh.get(), off, content.data() + off, n);
      if (!r.ok() || *r != n) errors += 1;
      mark = off + n;
    }
    done = true;
  });
  std::thread reader([&] {
    std::mt19937_64 rng(131);
    std::string buf;
    while (!done) {
      const uint64_t m = mark.load();
      if (m == 0) continue;
      const uint64_t off = rng() % m;
      const size_t n = std::min<uint64_t>(1 + rng() % (300 * 1024), m - off);
      buf.assign(n, '\0');
      auto r = fs_->Read(rh.get(), off, n, buf.data());
      if (!r.ok()) {
        errors += 1;
      } else if (*r != n || buf.compare(0, n, content, off, n) != 0) {
        bad_reads += 1;
      }
    }
  });
  std::thread flusher([&] {
    while (!done) {
      if (!fs_->Flush(rh.get()).ok()) errors += 1;
      std::this_thread::sleep_for(3ms);
    }
  });
  writer.join();
  reader.join();
  // A flush that is stuck waiting for the writer's last partial chunk (see
  // FlushReturnsWhileAnotherHandleKeepsWriting) gets going again once that
  // chunk is sealed by a flush through the writer's handle.
  WAVEFS_EXPECT_OK(fs_->Flush(wh.get()));
  flusher.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(bad_reads.load(), 0);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(wh)));
  EXPECT_TRUE(SameBytes(content, ReadAt(rh.get(), 0, size)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(rh)));
  Remount();
  EXPECT_TRUE(SameBytes(content, ReadFile(ino)));
}

// Regression (fixed): Flush (and Release, Fsync: all go through Commit) can
// block for as long as another handle keeps a partial chunk dirty. Commit seals
// the dirty buffers, then waits for `inflight.empty() && dirty.empty()`; a
// write through another handle during that wait adds a dirty buffer nobody
// seals, so the wait only ends when that other handle flushes. A close() in one
// process hangs while another process (or thread) has the same file open
// for writing, e.g. a log reader's editor closing while the logger appends;
// each hung close also holds a FUSE worker thread.
// Repro, forced with hooks: the one seal thread holds the last full chunk
// of h1's writes; Flush(h2) starts waiting for it; only then h1 writes 1
// byte at chunk 9; then the held seal ends. The Flush must return without
// h1 flushing. Since 2026-12-02 such a write waits for the flush's commit
// (OpenFile::commits: a commit records only what it sealed), so it lands
// after the flush, which the test checks too.
TEST_F(FsTest, FlushReturnsWhileAnotherHandleKeepsWriting) {
  std::atomic<uint64_t> watched{0};  // the file the hooks act on (0: none)
  std::mutex mu;
  std::condition_variable cv;
  bool flush_waiting = false;  // under mu
  bool other_wrote = false;    // under mu
  FsOptions options = TestOptions();
  options.seal_threads = 1;
  options.dirty_buffers = 12;
  options.hooks.seal_before_record = [&](uint64_t ino, uint64_t index) {
    if (ino != watched.load() || index != 7) return;
    std::unique_lock<std::mutex> lock(mu);
    // Bounds a hang only: the test releases it.
    cv.wait_for(lock, 60s, [&] { return other_wrote; });
  };
  options.hooks.seal_all_wait = [&](uint64_t ino) {
    if (ino != watched.load()) return;
    std::lock_guard<std::mutex> lock(mu);
    flush_waiting = true;
    cv.notify_all();
  };
  std::atomic<int> write_waits{0};
  options.hooks.change_waits = [&](uint64_t ino) {
    if (ino == watched.load()) write_waits += 1;
  };
  Unmount();
  Mount(options);
  const uint64_t ino = Create("f");
  auto h1 = OpenH(ino);
  auto h2 = OpenH(ino);
  ASSERT_TRUE(h1 && h2);
  watched = ino;
  const std::string data = RandomBytes(8 * kC, 140);
  // 8 full chunks; the seal of the last one (index 7) is held.
  WriteAt(h1.get(), 0, data, 4 << 20);
  std::atomic<bool> flushed{false};
  Status flush_status;
  std::thread flusher([&] {
    flush_status = fs_->Flush(h2.get());
    flushed = true;
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, 60s, [&] { return flush_waiting; }))
        << "the flush never waited for its seals";
  }
  // The flush waits (with the file lock released) for chunk 7's seal;
  // another handle keeps writing meanwhile.
  std::atomic<bool> wrote{false};
  std::thread other([&] {
    WriteAt(h1.get(), 9 * kC, "x");
    wrote = true;
  });
  EXPECT_TRUE(WaitFor([&] { return write_waits.load() == 1; }, 60s))
      << "the write did not wait for the flush's commit";
  EXPECT_FALSE(wrote.load());
  {
    std::lock_guard<std::mutex> lock(mu);
    other_wrote = true;
    cv.notify_all();
  }
  // Only bounds the hang of the bug: with the fix the flush returns as soon
  // as chunk 7 is recorded.
  const bool returned = WaitFor([&] { return flushed.load(); }, 60s);
  EXPECT_TRUE(returned) << "Flush blocked while another handle wrote";
  other.join();
  if (!returned) WAVEFS_EXPECT_OK(fs_->Flush(h1.get()));  // unstick it
  flusher.join();
  EXPECT_TRUE(wrote.load());
  WAVEFS_EXPECT_OK(flush_status);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h1)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h2)));
  watched = 0;
  std::string want = data;
  want.resize(9 * kC, '\0');
  want += "x";
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
  Remount();  // drops the hooks (they refer to this test's locals)
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
}

TEST_F(FsTest, TwoHandlesOnOneFileSeeEachOthersWrites) {
  const uint64_t ino = WriteFile("f", RandomBytes(kC + 10, 121));
  auto h1 = OpenH(ino);
  auto h2 = OpenH(ino);
  ASSERT_TRUE(h1 && h2);
  WriteAt(h1.get(), 5, "written by one");
  EXPECT_EQ(ReadAt(h2.get(), 5, 14), "written by one");
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h1)));
  EXPECT_EQ(ReadAt(h2.get(), 5, 14), "written by one");
  WriteAt(h2.get(), kC + 5, "two");
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h2)));
  Remount();
  const std::string all = ReadFile(ino);
  EXPECT_EQ(all.substr(5, 14), "written by one");
  EXPECT_EQ(all.substr(kC + 5, 3), "two");
}

TEST_F(FsTest, SetAttrChangesModeOwnerAndTimes) {
  const uint64_t ino = WriteFile("f", "abc");
  AttrChange c;
  c.mode = 0600;
  c.uid = 42;
  c.gid = 43;
  c.mtime = timespec{1000000000, 5};
  auto r = fs_->SetAttr(ino, c);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->mode, static_cast<uint32_t>(S_IFREG | 0600));
  Remount();
  auto a = fs_->GetAttr(ino);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->mode, static_cast<uint32_t>(S_IFREG | 0600));
  EXPECT_EQ(a->uid, 42u);
  EXPECT_EQ(a->gid, 43u);
  EXPECT_EQ(a->mtime.tv_sec, 1000000000);
  EXPECT_EQ(a->mtime.tv_nsec, 5);
  EXPECT_EQ(a->size, 3u);
  // Truncating a directory is refused.
  const uint64_t d = Create("d", kRootIno, kDirMode);
  EXPECT_EQ(Truncate(d, 0).code(), Code::kIsDir);
  EXPECT_EQ(Truncate(ino, kMaxFileSize + 1).code(), Code::kTooBig);
}

// tar, cp -p and rsync --inplace set times, owner and mode through the
// descriptor they are writing, then close it. Such a setattr from the
// thread that opened the handle waits for that handle's close (one commit
// per file instead of one per call); one from any other thread commits at
// once, with the writes so far.
TEST_F(FsTest, SetAttrByTheWritingThreadIsCommittedByItsClose) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  ASSERT_NE(h, nullptr);
  h->opener = 77;
  WriteAt(h.get(), 0, "abc");
  auto committed = [&] {
    auto a = index_->GetInode(ino);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    return a.ok() ? *a : InodeAttr{};
  };
  AttrChange mode;
  mode.mode = 0600;
  mode.mtime = timespec{1000000000, 5};
  auto r = fs_->SetAttr(ino, mode, /*caller=*/77);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->mode, static_cast<uint32_t>(S_IFREG | 0600));
  EXPECT_EQ(fs_->GetAttr(ino)->mode, static_cast<uint32_t>(S_IFREG | 0600));
  EXPECT_EQ(committed().mode, static_cast<uint32_t>(kFileMode))
      << "the writing thread's setattr was committed before its close";
  EXPECT_EQ(committed().size, 0u);

  // Another thread (a chmod from a shell): at once, with the writes.
  AttrChange owner;
  owner.uid = 42;
  ASSERT_TRUE(fs_->SetAttr(ino, owner, /*caller=*/99).ok());
  EXPECT_EQ(committed().uid, 42u);
  EXPECT_EQ(committed().mode, static_cast<uint32_t>(S_IFREG | 0600));
  EXPECT_EQ(committed().size, 3u);

  // Nothing uncommitted written through the handle any more: at once too.
  AttrChange group;
  group.gid = 43;
  ASSERT_TRUE(fs_->SetAttr(ino, group, /*caller=*/77).ok());
  EXPECT_EQ(committed().gid, 43u);

  // Written again: waits again, and the close commits it.
  WriteAt(h.get(), 3, "def");
  AttrChange times;
  times.mtime = timespec{1100000000, 7};
  ASSERT_TRUE(fs_->SetAttr(ino, times, /*caller=*/77).ok());
  EXPECT_EQ(committed().size, 3u);
  // The close may commit as tail-journal records (a file committed a
  // moment ago), which leave the inode record alone: a kill and the
  // records' replay show what it committed.
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  KillAndMount();
  auto a = fs_->GetAttr(ino);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->mode, static_cast<uint32_t>(S_IFREG | 0600));
  EXPECT_EQ(a->uid, 42u);
  EXPECT_EQ(a->gid, 43u);
  EXPECT_EQ(a->mtime.tv_sec, 1100000000);
  EXPECT_EQ(a->mtime.tv_nsec, 7);
  EXPECT_EQ(ReadFile(ino), "abcdef");
}

}  // namespace
}  // namespace wavefs
