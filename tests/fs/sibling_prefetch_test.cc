// SiblingPrefetch (fs/sibling_prefetch.h): a reader going through a
// directory's small files in the listing's order finds the next ones
// fetched ahead, each fetched from the store once; a listing alone, a
// reader that jumps around and a writer start nothing; a file changed after
// its chunk was fetched ahead reads back as changed.
#include "fs/sibling_prefetch.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>

#include "fs/chunk_reader.h"
#include "fs_fixture.h"

namespace wavefs {
namespace fs_testing {
namespace {

using namespace std::chrono_literals;

constexpr int kFiles = 20;

class SiblingPrefetchTest : public FsTest {
 protected:
  static FsOptions Ahead(size_t n) {
    FsOptions o = TestOptions();
    o.prefetch_files = n;
    return o;
  }
  // Directory "d": f00..f19 (small, all different), then "y-sub" (a
  // directory) and "z-big" (1.5 MiB: more than a prefetch takes), all
  // uploaded; the mount is fresh, so nothing is cached.
  void SetUp() override {
    FsTest::SetUp();
    Remount(Ahead(4));
    auto d = fs_->MakeNode(kRootIno, "d", S_IFDIR | 0755, 0, 1000, 1000);
    ASSERT_TRUE(d.ok());
    dir_ = d->ino;
    for (int i = 0; i < kFiles; ++i) {
      data_.push_back(RandomBytes(3000 + 100 * i, 700 + i));
      inos_.push_back(WriteFile(Name(i), data_.back(), dir_));
    }
    ASSERT_TRUE(
        fs_->MakeNode(dir_, "y-sub", S_IFDIR | 0755, 0, 1000, 1000).ok());
    WriteFile("z-big", RandomBytes(3 << 19, 799), dir_);
    Drain();
    Remount(Ahead(4));
    gets_ = store_->gets();
  }
  static std::string Name(int i) {
    char name[8];
    std::snprintf(name, sizeof name, "f%02d", i);
    return name;
  }
  // Opens file i for reading (as cat does), reads it whole, closes it.
  std::string Read(int i) { return ReadFile(inos_[i]); }
  uint64_t Gets() { return store_->gets() - gets_; }

  uint64_t dir_ = 0;
  std::vector<std::string> data_;
  std::vector<uint64_t> inos_;
  uint64_t gets_ = 0;
};

TEST_F(SiblingPrefetchTest, AReaderInOrderFindsTheNextFilesFetched) {
  const auto names = List(dir_);
  ASSERT_EQ(names.size(), kFiles + 2u);
  for (int i = 0; i < kFiles; ++i) {
    // The open of file i - 1 queued files up to i + 3; the first two
    // opens only show the order.
    if (i >= 2) {
      const uint64_t want = std::min(kFiles, i + 4) - 2;
      ASSERT_TRUE(
          WaitFor([&] { return Stat("sibling_prefetches") >= want; }, 30s))
          << "file " << i << ": " << Stat("sibling_prefetches") << " of "
          << want << " fetched ahead";
    }
    EXPECT_TRUE(SameBytes(data_[i], Read(i))) << Name(i);
  }
  // Every chunk came from the store once: files 0 and 1 by the reader, the
  // rest ahead of it; the big file was not fetched.
  EXPECT_EQ(Stat("sibling_prefetches"), kFiles - 2u);
  EXPECT_EQ(Stat("sibling_queued"), kFiles - 1u);  // f02..f19 and z-big
  EXPECT_EQ(Gets(), static_cast<uint64_t>(kFiles));
}

TEST_F(SiblingPrefetchTest, ListingsJumpsAndWritersStartNothing) {
  // `ls -l`: a listing and the attributes of every entry.
  List(dir_);
  for (uint64_t ino : inos_) ASSERT_TRUE(fs_->GetAttr(ino).ok());
  // A reader that jumps back, then forward past what would be fetched.
  EXPECT_TRUE(SameBytes(data_[10], Read(10)));
  EXPECT_TRUE(SameBytes(data_[3], Read(3)));
  EXPECT_TRUE(SameBytes(data_[15], Read(15)));
  // A writer's open right after the one it follows.
  {
    auto h = fs_->Open(inos_[16], O_WRONLY);
    ASSERT_TRUE(h.ok());
    WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
  }
  EXPECT_EQ(Stat("sibling_queued"), 0u);
  EXPECT_EQ(Gets(), 3u);
  // A file opened without a listing of its directory since the mount.
  Remount(Ahead(4));
  gets_ = store_->gets();
  EXPECT_TRUE(SameBytes(data_[0], Read(0)));
  EXPECT_TRUE(SameBytes(data_[1], Read(1)));
  EXPECT_EQ(Stat("sibling_queued"), 0u);
  // Off: nothing either.
  Remount(Ahead(0));
  List(dir_);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(SameBytes(data_[i], Read(i)));
  EXPECT_EQ(Stat("sibling_queued"), 0u);
}

TEST_F(SiblingPrefetchTest, AFileChangedAfterItsFetchReadsBackChanged) {
  List(dir_);
  EXPECT_TRUE(SameBytes(data_[0], Read(0)));
  EXPECT_TRUE(SameBytes(data_[1], Read(1)));  // queues f02..f05
  ASSERT_TRUE(WaitFor([&] { return Stat("sibling_prefetches") == 4; }, 30s));
  // f03's old chunk is in the cache; the file now names another.
  {
    auto h = OpenH(inos_[3]);
    ASSERT_TRUE(h);
    WriteAt(h.get(), 100, "changed after its prefetch");
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
    data_[3].replace(100, 26, "changed after its prefetch");
  }
  for (int i = 2; i < 6; ++i) EXPECT_TRUE(SameBytes(data_[i], Read(i)));
  Remount(Ahead(4));
  EXPECT_TRUE(SameBytes(data_[3], Read(3)));
}

// A program that opens files by their paths (xargs cat of a list) lists
// no directory: the first open after a lookup has the daemon list it.
TEST_F(SiblingPrefetchTest, AReaderByPathsFindsTheNextFilesFetched) {
  for (int i = 0; i < kFiles; ++i) {
    auto a = fs_->Lookup(dir_, Name(i));
    ASSERT_TRUE(a.ok());
    ASSERT_EQ(a->ino, inos_[i]);
    if (i == 1) {
      ASSERT_TRUE(WaitFor([&] { return Stat("sibling_listings") == 1; }, 30s));
    }
    if (i >= 2) {
      const uint64_t want = std::min(kFiles, i + 4) - 2;
      ASSERT_TRUE(
          WaitFor([&] { return Stat("sibling_prefetches") >= want; }, 30s))
          << "file " << i;
    }
    EXPECT_TRUE(SameBytes(data_[i], Read(i))) << Name(i);
  }
  EXPECT_EQ(Stat("sibling_listings"), 1u);
  EXPECT_EQ(Stat("sibling_prefetches"), kFiles - 2u);
  EXPECT_EQ(Gets(), static_cast<uint64_t>(kFiles));
}

// GNU cp reads a directory's files by inode number: here the reverse of
// the names' order (the files were made from the last name to the first).
TEST_F(SiblingPrefetchTest, AReaderInInodeOrderFindsTheNextFilesFetched) {
  auto e = fs_->MakeNode(kRootIno, "e", S_IFDIR | 0755, 0, 1000, 1000);
  ASSERT_TRUE(e.ok());
  std::vector<std::string> data;
  std::vector<uint64_t> inos;  // by inode number
  for (int i = kFiles - 1; i >= 0; --i) {
    data.push_back(RandomBytes(2000 + 10 * i, 900 + i));
    inos.push_back(WriteFile(Name(i), data.back(), e->ino));
  }
  ASSERT_TRUE(std::is_sorted(inos.begin(), inos.end()));
  Drain();
  Remount(Ahead(4));
  gets_ = store_->gets();
  ASSERT_EQ(List(e->ino).front(), Name(0));
  for (int k = 0; k < kFiles; ++k) {
    if (k >= 2) {
      const uint64_t want = std::min(kFiles, k + 4) - 2;
      ASSERT_TRUE(
          WaitFor([&] { return Stat("sibling_prefetches") >= want; }, 30s));
    }
    EXPECT_TRUE(SameBytes(data[k], ReadFile(inos[k])));
  }
  EXPECT_EQ(Stat("sibling_prefetches"), kFiles - 2u);
  EXPECT_EQ(Gets(), static_cast<uint64_t>(kFiles));
}

// What SiblingPrefetch remembers is bounded: directories and listed files
// are forgotten least recently listed or read from first. Driven directly
// (inode numbers of no file: only what is queued is looked at, and queueing
// happens in NoteOpen itself).
TEST_F(SiblingPrefetchTest, ItForgetsTheDirectoriesLeastRecentlyListedOrRead) {
  ChunkReader reader(index_.get(), spill_.get(), store_.get(),
                     kNewestChunkFormat, ChunkReader::Options{});
  SiblingPrefetch::Options o;
  o.files_ahead = 2;
  o.threads = 1;
  o.dirs = 2;
  o.max_files = 10;
  SiblingPrefetch sp(index_.get(), &reader, o);
  // Directory d holds files 100d+0 .. 100d+n-1.
  auto list = [&](uint64_t d, int n) {
    std::vector<uint64_t> files;
    for (int i = 0; i < n; ++i) files.push_back(100 * d + i);
    sp.NoteListing(d, true, files);
  };
  auto open = [&](uint64_t d, int i) { sp.NoteOpen(100 * d + i); };

  // tar -c: the parent (1) is listed, and while its files are read, each
  // subdirectory (2, 3, 4) is listed in turn. Reading from the parent
  // keeps it: each new subdirectory pushes out the previous one, not the
  // parent (which a forgetting by listing alone would drop at 3).
  list(1, 8);
  open(1, 0);
  list(2, 1);
  open(1, 1);  // in order: 2 and 3 queued
  EXPECT_EQ(sp.queued(), 2u);
  list(3, 1);  // forgets 2
  open(1, 2);  // 4 queued
  EXPECT_EQ(sp.queued(), 3u) << "the parent was forgotten at a listing";
  list(4, 1);  // forgets 3
  open(1, 3);  // 5 queued
  EXPECT_EQ(sp.queued(), 4u) << "the parent was forgotten at a listing";
  list(1, 8);  // a new listing of the parent: its files may go again
  open(1, 0);
  open(1, 1);
  EXPECT_EQ(sp.queued(), 6u);

  // Two directories at most: listing a third forgets the one least
  // recently listed or read from.
  list(5, 4);  // forgets 4
  list(6, 4);  // forgets 1
  open(1, 2);
  open(1, 3);
  EXPECT_EQ(sp.queued(), 6u) << "a forgotten directory queued files";
  open(5, 0);
  open(5, 1);
  EXPECT_EQ(sp.queued(), 8u);

  // At most 10 files in all: a listing forgets the least recent others for
  // room, and a listing bigger than that keeps its first 10.
  list(7, 8);  // forgets 6 (two directories at most), then 5 (room)
  open(5, 2);
  EXPECT_EQ(sp.queued(), 8u) << "a directory forgotten for room queued";
  open(7, 0);
  open(7, 1);
  EXPECT_EQ(sp.queued(), 10u);
  list(8, 12);  // forgets 7; its files 10 and 11 are not remembered
  open(8, 8);
  open(8, 9);
  open(8, 10);
  EXPECT_EQ(sp.queued(), 10u) << "files past the cap were queued";
  open(8, 0);
  open(8, 1);
  EXPECT_EQ(sp.queued(), 12u);
}

}  // namespace
}  // namespace fs_testing
}  // namespace wavefs
