// Tests of the local index: inode records, directory entries, chunk refs,
// inode numbers and the upload queue, including what survives a reopen.
#include "store/index.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "store/index_hooks.h"
#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::MakeAddress;
using testing_util::TempDir;

ChunkRef MakeRef(uint32_t seed, uint32_t length) {
  ChunkRef ref;
  ref.address = MakeAddress(seed);
  ref.key = MakeAddress(seed + 1000);
  ref.length = length;
  return ref;
}

ChunkRef HoleRef(uint32_t length) {
  ChunkRef ref;
  ref.hole = true;
  ref.length = length;
  return ref;
}

InodeAttr MakeFileAttr(uint64_t ino, uint64_t size) {
  InodeAttr a;
  a.ino = ino;
  a.mode = S_IFREG | 0644;
  a.uid = 1000;
  a.gid = 1000;
  a.nlink = 1;
  a.size = size;
  a.mtime = {1700000000, 123456789};
  a.atime = a.ctime = a.mtime;
  return a;
}

bool SameTime(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

void ExpectSameAttr(const InodeAttr& want, const InodeAttr& got) {
  EXPECT_EQ(got.ino, want.ino);
  EXPECT_EQ(got.mode, want.mode);
  EXPECT_EQ(got.uid, want.uid);
  EXPECT_EQ(got.gid, want.gid);
  EXPECT_EQ(got.nlink, want.nlink);
  EXPECT_EQ(got.size, want.size);
  EXPECT_EQ(got.rdev, want.rdev);
  EXPECT_TRUE(SameTime(got.atime, want.atime))
      << got.atime.tv_sec << "." << got.atime.tv_nsec;
  EXPECT_TRUE(SameTime(got.mtime, want.mtime))
      << got.mtime.tv_sec << "." << got.mtime.tv_nsec;
  EXPECT_TRUE(SameTime(got.ctime, want.ctime))
      << got.ctime.tv_sec << "." << got.ctime.tv_nsec;
  EXPECT_EQ(got.symlink, want.symlink);
}

class IndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<TempDir>();
    Reopen();
  }
  void TearDown() override {
    if (index_) WAVEFS_EXPECT_OK(index_->Close());
    index_.reset();
    tmp_.reset();
  }
  std::string dir() const { return *tmp_ / "index"; }
  void Reopen() {
    if (index_) WAVEFS_ASSERT_OK(index_->Close());
    index_.reset();
    auto opened = Index::Open(dir(), Index::Options{});
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    index_ = std::move(*opened);
  }
  std::vector<std::string> Names(uint64_t parent, const std::string& after) {
    std::vector<std::string> names;
    Status st = index_->ListDir(parent, after, [&](const DirEntry& e) {
      names.push_back(e.name);
      return true;
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return names;
  }
  std::vector<std::pair<uint64_t, ChunkRef>> Chunks(uint64_t ino) {
    std::vector<std::pair<uint64_t, ChunkRef>> chunks;
    Status st = index_->ListChunks(
        ino, [&](uint64_t i, const ChunkRef& r) { chunks.emplace_back(i, r); });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return chunks;
  }
  std::vector<std::pair<Address, uint64_t>> Queue(size_t max = 1000) {
    std::vector<std::pair<Address, uint64_t>> q;
    WAVEFS_EXPECT_OK(index_->PeekQueue(max, &q));
    return q;
  }
  bool Known(const Address& a) {
    auto r = index_->IsKnown(a);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() && *r;
  }
  bool Queued(const Address& a) {
    auto r = index_->IsQueued(a);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() && *r;
  }

  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<Index> index_;
};

// ------------------------------------------------------------------ inodes

// A file unlinked while open keeps an inode record without links until its
// last close; after a crash nothing would ever remove it.
TEST_F(IndexTest, ReclaimOrphansRemovesUnlinkedInodesOnly) {
  InodeAttr orphan;
  orphan.ino = index_->AllocateIno();
  orphan.mode = S_IFREG | 0644;
  orphan.nlink = 0;
  InodeAttr linked = orphan;
  linked.ino = index_->AllocateIno();
  linked.nlink = 1;
  ChunkRef ref;
  ref.length = 10;
  ref.address[0] = 1;
  IndexBatch b;
  b.PutInode(orphan);
  b.PutInode(linked);
  b.PutChunk(orphan.ino, 0, ref);
  b.PutChunk(linked.ino, 0, ref);
  b.PutXattr(orphan.ino, "user.a", "x");
  b.PutJournal(orphan.ino, 1, "rec");
  b.PutJournal(linked.ino, 1, "rec");
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));
  auto n = index_->ReclaimOrphans();
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(index_->GetInode(orphan.ino).status().code(), Code::kNotFound);
  EXPECT_TRUE(Chunks(orphan.ino).empty());
  EXPECT_EQ(index_->GetXattr(orphan.ino, "user.a").status().code(),
            Code::kNotFound);
  auto journal = [&](uint64_t ino) {
    size_t records = 0;
    WAVEFS_EXPECT_OK(index_->ListJournal(
        ino, [&](uint64_t, std::string_view) { ++records; }));
    return records;
  };
  EXPECT_EQ(journal(orphan.ino), 0u);
  EXPECT_TRUE(index_->GetInode(linked.ino).ok());
  EXPECT_EQ(Chunks(linked.ino).size(), 1u);
  EXPECT_EQ(journal(linked.ino), 1u);
  EXPECT_TRUE(index_->GetInode(kRootIno).ok());
  EXPECT_EQ(*index_->ReclaimOrphans(), 0u);
}

TEST_F(IndexTest, RootDirectoryExistsAfterFirstOpen) {
  auto root = index_->GetInode(kRootIno);
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  EXPECT_EQ(root->ino, kRootIno);
  EXPECT_TRUE(S_ISDIR(root->mode));
  EXPECT_EQ(root->mode & 07777, 0755u);
  EXPECT_EQ(root->nlink, 2u);
  EXPECT_EQ(root->uid, getuid());
  EXPECT_GT(root->mtime.tv_sec, 0);
  auto empty = index_->DirIsEmpty(kRootIno);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(*empty);
}

TEST_F(IndexTest, RootIsNotRecreatedOnReopen) {
  // A changed root (chmod, new mtime) must survive a remount untouched.
  auto root = index_->GetInode(kRootIno);
  ASSERT_TRUE(root.ok());
  InodeAttr changed = *root;
  changed.mode = S_IFDIR | 0700;
  changed.mtime = {12345, 678};
  IndexBatch b;
  b.PutInode(changed);
  WAVEFS_ASSERT_OK(index_->Commit(&b, true));
  Reopen();
  auto again = index_->GetInode(kRootIno);
  ASSERT_TRUE(again.ok());
  ExpectSameAttr(changed, *again);
}

TEST_F(IndexTest, MissingInodeIsNotFound) {
  auto a = index_->GetInode(424242);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), Code::kNotFound);
}

TEST_F(IndexTest, InodeEncodingRoundTripsEveryField) {
  InodeAttr a;
  a.ino = 77;
  a.mode = S_IFLNK | 0777;
  a.uid = 0xfffffffe;
  a.gid = 4242;
  a.nlink = 3;
  a.size = (1ull << 50) + 17;
  a.rdev = 0x0102030405060708ull;
  a.atime = {1, 999999999};
  a.mtime = {4102444800, 5};  // 2100-01-01: past 2038
  a.ctime = {-86400, 250};    // 1969-12-31: before the epoch
  a.symlink = "../some dir/target with spaces/\xc3\xa9t\xc3\xa9";
  auto decoded = DecodeInode(77, EncodeInode(a));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  ExpectSameAttr(a, *decoded);

  // The ino comes from the key, not from the record.
  auto other = DecodeInode(78, EncodeInode(a));
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->ino, 78u);
}

TEST_F(IndexTest, InodeWithEmptyAndLongSymlinkRoundTrips) {
  InodeAttr a = MakeFileAttr(5, 0);
  auto plain = DecodeInode(5, EncodeInode(a));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->symlink, "");
  a.mode = S_IFLNK | 0777;
  a.symlink = std::string(4095, 'x');
  a.size = a.symlink.size();
  auto linked = DecodeInode(5, EncodeInode(a));
  ASSERT_TRUE(linked.ok());
  ExpectSameAttr(a, *linked);
}

TEST_F(IndexTest, InodeStoredInIndexRoundTrips) {
  InodeAttr a = MakeFileAttr(9, 12345);
  a.mode = S_IFLNK | 0777;
  a.symlink = "/a/b/c";
  IndexBatch b;
  b.PutInode(a);
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));
  Reopen();
  auto got = index_->GetInode(9);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ExpectSameAttr(a, *got);
}

TEST_F(IndexTest, DamagedInodeRecordIsCorrupt) {
  InodeAttr a = MakeFileAttr(3, 10);
  a.symlink = "target";
  const std::string good = EncodeInode(a);

  std::vector<std::pair<std::string, std::string>> bad = {
      {"empty", ""},
      {"unknown version", std::string(1, '\x7f') + good.substr(1)},
      {"version only", good.substr(0, 1)},
      {"cut in the fixed part", good.substr(0, 20)},
      {"cut in the timestamps", good.substr(0, 40)},
      {"cut in the symlink", good.substr(0, good.size() - 2)},
      {"trailing bytes", good + "zz"},
  };
  for (const auto& [what, bytes] : bad) {
    auto r = DecodeInode(3, bytes);
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << what;
    EXPECT_FALSE(r.status().message().empty()) << what;
  }
}

TEST_F(IndexTest, DeleteInodeRemovesIt) {
  IndexBatch put;
  put.PutInode(MakeFileAttr(12, 1));
  WAVEFS_ASSERT_OK(index_->Commit(&put, false));
  ASSERT_TRUE(index_->GetInode(12).ok());
  IndexBatch del;
  del.DeleteInode(12);
  WAVEFS_ASSERT_OK(index_->Commit(&del, false));
  auto gone = index_->GetInode(12);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), Code::kNotFound);
}

// -------------------------------------------------------- directory entries

TEST_F(IndexTest, DirEntryPutLookupDelete) {
  IndexBatch b;
  b.PutDirEntry(kRootIno, "movie.mkv", 5, S_IFREG | 0644);
  b.PutDirEntry(kRootIno, "sub", 6, S_IFDIR | 0755);
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));

  auto e = index_->Lookup(kRootIno, "movie.mkv");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->name, "movie.mkv");
  EXPECT_EQ(e->ino, 5u);
  EXPECT_EQ(e->mode, static_cast<uint32_t>(S_IFREG | 0644));
  auto d = index_->Lookup(kRootIno, "sub");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->ino, 6u);
  EXPECT_TRUE(S_ISDIR(d->mode));

  // Names are exact: no prefix or case matches, and other parents are apart.
  EXPECT_EQ(index_->Lookup(kRootIno, "movie").status().code(), Code::kNotFound);
  EXPECT_EQ(index_->Lookup(kRootIno, "MOVIE.MKV").status().code(),
            Code::kNotFound);
  EXPECT_EQ(index_->Lookup(6, "movie.mkv").status().code(), Code::kNotFound);

  IndexBatch del;
  del.DeleteDirEntry(kRootIno, "movie.mkv");
  WAVEFS_ASSERT_OK(index_->Commit(&del, false));
  EXPECT_EQ(index_->Lookup(kRootIno, "movie.mkv").status().code(),
            Code::kNotFound);
  EXPECT_TRUE(index_->Lookup(kRootIno, "sub").ok());
}

TEST_F(IndexTest, PutDirEntryReplacesTheTarget) {
  IndexBatch a;
  a.PutDirEntry(kRootIno, "f", 5, S_IFREG | 0644);
  WAVEFS_ASSERT_OK(index_->Commit(&a, false));
  IndexBatch b;
  b.PutDirEntry(kRootIno, "f", 9, S_IFREG | 0600);
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));
  auto e = index_->Lookup(kRootIno, "f");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->ino, 9u);
  EXPECT_EQ(e->mode & 07777, 0600u);
  EXPECT_EQ(Names(kRootIno, ""), std::vector<std::string>{"f"});
}

TEST_F(IndexTest, ListDirIsInByteOrderAndContinuesAfterName) {
  const std::vector<std::string> names = {"b",  "a", "Z",        "aa", "a b",
                                          "10", "9", "\xc3\xa9", "zzz"};
  IndexBatch b;
  uint64_t ino = 100;
  for (const auto& n : names) b.PutDirEntry(kRootIno, n, ino++, S_IFREG);
  // Entries of neighbouring directories must not show up.
  b.PutDirEntry(kRootIno + 1, "other", 500, S_IFREG);
  b.PutDirEntry(0, "zero", 501, S_IFREG);
  b.PutDirEntry(256, "far", 502, S_IFREG);
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));

  std::vector<std::string> sorted = names;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(Names(kRootIno, ""), sorted);

  auto after = [&](const std::string& name) {
    return std::vector<std::string>(
        std::upper_bound(sorted.begin(), sorted.end(), name), sorted.end());
  };
  // `after` an existing name: strictly after it.
  EXPECT_EQ(Names(kRootIno, "aa"), after("aa"));
  EXPECT_EQ(Names(kRootIno, "aa").front(), "b");
  EXPECT_EQ(Names(kRootIno, "10"), after("10"));
  // `after` a name that is not there (removed between two readdir calls).
  EXPECT_EQ(Names(kRootIno, "ab"), after("ab"));
  EXPECT_EQ(Names(kRootIno, "a c"), after("a c"));
  EXPECT_EQ(Names(kRootIno, "a c").front(), "aa");
  // `after` the last name: nothing.
  EXPECT_TRUE(Names(kRootIno, sorted.back()).empty());
  EXPECT_TRUE(Names(kRootIno, "\xff").empty());

  // Each entry carries its ino and mode.
  bool found = false;
  WAVEFS_ASSERT_OK(index_->ListDir(kRootIno, "", [&](const DirEntry& e) {
    if (e.name == "a") {
      found = true;
      EXPECT_EQ(e.ino, 101u);
      EXPECT_EQ(e.mode, static_cast<uint32_t>(S_IFREG));
    }
    return true;
  }));
  EXPECT_TRUE(found);
}

TEST_F(IndexTest, ListDirStopsWhenCallbackReturnsFalse) {
  IndexBatch b;
  for (int i = 0; i < 10; ++i)
    b.PutDirEntry(kRootIno, "f" + std::to_string(i), 10 + i, S_IFREG);
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));
  std::vector<std::string> got;
  WAVEFS_ASSERT_OK(index_->ListDir(kRootIno, "", [&](const DirEntry& e) {
    got.push_back(e.name);
    return got.size() < 3;
  }));
  EXPECT_EQ(got, (std::vector<std::string>{"f0", "f1", "f2"}));

  // Paging three at a time with `after` visits every entry exactly once.
  std::vector<std::string> all;
  std::string after;
  while (true) {
    std::vector<std::string> page;
    WAVEFS_ASSERT_OK(index_->ListDir(kRootIno, after, [&](const DirEntry& e) {
      page.push_back(e.name);
      return page.size() < 3;
    }));
    if (page.empty()) break;
    all.insert(all.end(), page.begin(), page.end());
    after = page.back();
  }
  EXPECT_EQ(all.size(), 10u);
  EXPECT_EQ(all, Names(kRootIno, ""));
}

TEST_F(IndexTest, DirIsEmptyFollowsEntries) {
  IndexBatch b;
  b.PutDirEntry(kRootIno, "d", 7, S_IFDIR | 0755);
  b.PutDirEntry(8, "x", 9, S_IFREG);  // the next directory's entry
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));
  auto e7 = index_->DirIsEmpty(7);
  ASSERT_TRUE(e7.ok());
  EXPECT_TRUE(*e7);
  auto root = index_->DirIsEmpty(kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_FALSE(*root);

  IndexBatch c;
  c.PutDirEntry(7, "child", 10, S_IFREG);
  WAVEFS_ASSERT_OK(index_->Commit(&c, false));
  EXPECT_FALSE(*index_->DirIsEmpty(7));
  IndexBatch d;
  d.DeleteDirEntry(7, "child");
  WAVEFS_ASSERT_OK(index_->Commit(&d, false));
  EXPECT_TRUE(*index_->DirIsEmpty(7));
}

// --------------------------------------------------------------- chunk refs

TEST_F(IndexTest, ChunkRefsPutGetAndListInIndexOrder) {
  const uint64_t ino = 20;
  IndexBatch b;
  // Inserted out of order; 256 would sort before 2 as a little-endian key.
  b.PutChunk(ino, 256, MakeRef(3, 100));
  b.PutChunk(ino, 2, MakeRef(2, static_cast<uint32_t>(kChunkSize)));
  b.PutChunk(ino, 0, MakeRef(1, static_cast<uint32_t>(kChunkSize)));
  b.PutChunk(ino, 1, HoleRef(static_cast<uint32_t>(kChunkSize)));
  b.PutChunk(ino + 1, 0, MakeRef(9, 1));  // another file's chunk
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));

  auto c2 = index_->GetChunk(ino, 2);
  ASSERT_TRUE(c2.ok()) << c2.status().ToString();
  ASSERT_TRUE(c2->has_value());
  EXPECT_EQ(**c2, MakeRef(2, static_cast<uint32_t>(kChunkSize)));
  auto hole = index_->GetChunk(ino, 1);
  ASSERT_TRUE(hole.ok());
  ASSERT_TRUE(hole->has_value());
  EXPECT_TRUE((*hole)->hole);
  EXPECT_EQ((*hole)->length, kChunkSize);
  auto absent = index_->GetChunk(ino, 3);
  ASSERT_TRUE(absent.ok());
  EXPECT_FALSE(absent->has_value());

  auto chunks = Chunks(ino);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[0].first, 0u);
  EXPECT_EQ(chunks[1].first, 1u);
  EXPECT_EQ(chunks[2].first, 2u);
  EXPECT_EQ(chunks[3].first, 256u);
  EXPECT_EQ(chunks[3].second, MakeRef(3, 100));
  EXPECT_EQ(Chunks(ino + 1).size(), 1u);
  EXPECT_TRUE(Chunks(ino + 2).empty());
}

TEST_F(IndexTest, PutChunkOverwritesTheRef) {
  IndexBatch a;
  a.PutChunk(30, 4, MakeRef(1, 10));
  WAVEFS_ASSERT_OK(index_->Commit(&a, false));
  IndexBatch b;
  b.PutChunk(30, 4, MakeRef(2, 20));
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));
  auto got = index_->GetChunk(30, 4);
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ(**got, MakeRef(2, 20));
  EXPECT_EQ(Chunks(30).size(), 1u);
}

TEST_F(IndexTest, DeleteChunksFromCutsOnlyThatFileFromThatIndex) {
  IndexBatch b;
  for (uint64_t i = 0; i < 6; ++i) {
    b.PutChunk(40, i, MakeRef(static_cast<uint32_t>(i + 1), 10));
    b.PutChunk(41, i, MakeRef(static_cast<uint32_t>(i + 50), 10));
    b.PutChunk(39, i, MakeRef(static_cast<uint32_t>(i + 90), 10));
  }
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));

  IndexBatch cut;
  cut.DeleteChunksFrom(40, 3);
  WAVEFS_ASSERT_OK(index_->Commit(&cut, false));
  auto kept = Chunks(40);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept.back().first, 2u);
  EXPECT_EQ(Chunks(41).size(), 6u);
  EXPECT_EQ(Chunks(39).size(), 6u);

  IndexBatch all;
  all.DeleteChunksFrom(41, 0);
  WAVEFS_ASSERT_OK(index_->Commit(&all, false));
  EXPECT_TRUE(Chunks(41).empty());
  EXPECT_EQ(Chunks(40).size(), 3u);
  EXPECT_EQ(Chunks(39).size(), 6u);
}

TEST_F(IndexTest, PutChunkAfterDeleteChunksFromInSameBatchSurvives) {
  // truncate + rewrite committed together: the new refs must not be eaten by
  // the range delete written earlier in the same batch.
  IndexBatch b;
  for (uint64_t i = 0; i < 5; ++i)
    b.PutChunk(50, i, MakeRef(static_cast<uint32_t>(i + 1), 10));
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));

  IndexBatch t;
  t.DeleteChunksFrom(50, 1);
  t.PutChunk(50, 1, MakeRef(101, 7));
  t.PutChunk(50, 3, MakeRef(103, 8));
  WAVEFS_ASSERT_OK(index_->Commit(&t, false));

  auto check = [&] {
    auto chunks = Chunks(50);
    ASSERT_EQ(chunks.size(), 3u);
    EXPECT_EQ(chunks[0].first, 0u);
    EXPECT_EQ(chunks[0].second, MakeRef(1, 10));
    EXPECT_EQ(chunks[1].first, 1u);
    EXPECT_EQ(chunks[1].second, MakeRef(101, 7));
    EXPECT_EQ(chunks[2].first, 3u);
    EXPECT_EQ(chunks[2].second, MakeRef(103, 8));
    auto c2 = index_->GetChunk(50, 2);
    ASSERT_TRUE(c2.ok());
    EXPECT_FALSE(c2->has_value());
    auto c4 = index_->GetChunk(50, 4);
    ASSERT_TRUE(c4.ok());
    EXPECT_FALSE(c4->has_value());
  };
  check();
  Reopen();
  check();
}

TEST_F(IndexTest, PutChunkBeforeDeleteChunksFromInSameBatchIsDeleted) {
  IndexBatch t;
  t.PutChunk(60, 2, MakeRef(1, 10));
  t.DeleteChunksFrom(60, 0);
  WAVEFS_ASSERT_OK(index_->Commit(&t, false));
  EXPECT_TRUE(Chunks(60).empty());
}

// Index's deletes of a file's records: point deletes when there are few
// (a range tombstone per small file made every later read rebuild RocksDB's
// list of them: rm -rf of 8,000 files took 15-19 s), one range delete when
// there are many; either way exactly that file's records go, and puts later
// in the same batch stay.
TEST_F(IndexTest, DeletesOfAFilesRecordsArePointDeletesUnlessThereAreMany) {
  auto counts = [&](uint64_t ino) {
    size_t xattrs = 0, journal = 0;
    WAVEFS_EXPECT_OK(index_->ListXattrs(
        ino, [&](const std::string&, const std::string&) { ++xattrs; }));
    WAVEFS_EXPECT_OK(index_->ListJournal(
        ino, [&](uint64_t, std::string_view) { ++journal; }));
    return std::make_tuple(Chunks(ino).size(), xattrs, journal);
  };
  IndexBatch b;
  for (uint64_t ino = 69; ino <= 71; ++ino) {
    for (uint64_t i = 0; i < 6; ++i)
      b.PutChunk(ino, i, MakeRef(static_cast<uint32_t>(ino * 10 + i), 10));
    b.PutXattr(ino, "user.a", "1");
    b.PutXattr(ino, "user.b", "2");
    for (uint64_t seq = 1; seq <= 3; ++seq) b.PutJournal(ino, seq, "rec");
  }
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));

  IndexBatch del;
  WAVEFS_ASSERT_OK(index_->DeleteJournal(&del, 70));
  WAVEFS_ASSERT_OK(index_->DeleteChunksFrom(&del, 70, 2));
  WAVEFS_ASSERT_OK(index_->DeleteXattrs(&del, 70));
  del.PutChunk(70, 3, MakeRef(999, 7));  // a rewrite after the truncate
  EXPECT_EQ(del.range_deletes(), 0u);
  WAVEFS_ASSERT_OK(index_->Commit(&del, false));
  auto check = [&] {
    auto chunks = Chunks(70);
    ASSERT_EQ(chunks.size(), 3u);
    EXPECT_EQ(chunks[0].first, 0u);
    EXPECT_EQ(chunks[1].first, 1u);
    EXPECT_EQ(chunks[2].first, 3u);
    EXPECT_EQ(chunks[2].second, MakeRef(999, 7));
    EXPECT_EQ(counts(70), std::make_tuple(size_t{3}, size_t{0}, size_t{0}));
    EXPECT_EQ(counts(69), std::make_tuple(size_t{6}, size_t{2}, size_t{3}));
    EXPECT_EQ(counts(71), std::make_tuple(size_t{6}, size_t{2}, size_t{3}));
  };
  check();
  Reopen();
  check();

  // More records than the limit: one range delete, same outcome.
  IndexBatch many;
  const uint64_t n = Index::kPointDeleteLimit + 1;
  for (uint64_t i = 0; i < n; ++i)
    many.PutChunk(80, i, MakeRef(static_cast<uint32_t>(i + 5000), 10));
  WAVEFS_ASSERT_OK(index_->Commit(&many, false));
  ASSERT_EQ(Chunks(80).size(), n);
  IndexBatch all;
  WAVEFS_ASSERT_OK(index_->DeleteChunksFrom(&all, 80, 0));
  EXPECT_EQ(all.range_deletes(), 1u);
  WAVEFS_ASSERT_OK(index_->Commit(&all, false));
  EXPECT_TRUE(Chunks(80).empty());
  EXPECT_EQ(counts(71), std::make_tuple(size_t{6}, size_t{2}, size_t{3}));
}

// ------------------------------------------------------------- inode numbers

TEST_F(IndexTest, AllocateIsUniqueAndAboveRoot) {
  std::vector<uint64_t> inos;
  for (int i = 0; i < 100; ++i) inos.push_back(index_->AllocateIno());
  for (uint64_t ino : inos) EXPECT_GT(ino, kRootIno);
  std::sort(inos.begin(), inos.end());
  EXPECT_EQ(std::unique(inos.begin(), inos.end()), inos.end());
}

TEST_F(IndexTest, AllocateInoAfterReopenIsAboveEveryExistingInode) {
  uint64_t highest = 0;
  IndexBatch b;
  for (int i = 0; i < 5; ++i) {
    const uint64_t ino = index_->AllocateIno();
    highest = std::max(highest, ino);
    b.PutInode(MakeFileAttr(ino, 0));
  }
  // An inode made with an explicit, larger number (e.g. by an older run).
  b.PutInode(MakeFileAttr(1000, 0));
  // Keys that sort after every inode key must not confuse the scan.
  b.PutDirEntry(1000, "x", 1001, S_IFREG);
  b.PutChunk(1000, 0, MakeRef(1, 1));
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));
  ASSERT_TRUE(index_->EnqueueStaged(MakeAddress(1), 10).ok());
  Reopen();
  const uint64_t next = index_->AllocateIno();
  EXPECT_GT(next, 1000u);
  EXPECT_GT(next, highest);
  // The new number does not collide with anything on disk.
  EXPECT_EQ(index_->GetInode(next).status().code(), Code::kNotFound);
  // Every existing inode is still there.
  EXPECT_TRUE(index_->GetInode(highest).ok());
  EXPECT_TRUE(index_->GetInode(1000).ok());
}

TEST_F(IndexTest, AllocateInoOnFreshIndexDoesNotReuseRoot) {
  Reopen();  // no inodes but the root
  EXPECT_GT(index_->AllocateIno(), kRootIno);
}

// -------------------------------------------------------------- upload queue

TEST_F(IndexTest, EnqueueStagedDeduplicatesAndCounts) {
  const Address a = MakeAddress(1);
  const Address b = MakeAddress(2);
  EXPECT_FALSE(Known(a));
  EXPECT_FALSE(Queued(a));
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(index_->pending_bytes(), 0u);

  auto first = index_->EnqueueStaged(a, 1000);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(*first);
  EXPECT_TRUE(Known(a));
  EXPECT_TRUE(Queued(a));
  EXPECT_EQ(index_->pending_chunks(), 1u);
  EXPECT_EQ(index_->pending_bytes(), 1000u);

  auto second = index_->EnqueueStaged(a, 1000);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(*second) << "the same address was queued twice";
  EXPECT_EQ(index_->pending_chunks(), 1u);
  EXPECT_EQ(index_->pending_bytes(), 1000u);
  EXPECT_EQ(Queue().size(), 1u);

  auto other = index_->EnqueueStaged(b, 24);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(*other);
  EXPECT_EQ(index_->pending_chunks(), 2u);
  EXPECT_EQ(index_->pending_bytes(), 1024u);
}

TEST_F(IndexTest, PeekQueueReturnsEntriesWithLengthsUpToMax) {
  std::vector<std::pair<Address, uint64_t>> want;
  for (uint32_t i = 1; i <= 10; ++i) {
    want.emplace_back(MakeAddress(i), 100 + i);
    ASSERT_TRUE(*index_->EnqueueStaged(MakeAddress(i), 100 + i));
  }
  std::sort(want.begin(), want.end());
  // Queue-looking keys of other kinds must not be mistaken for entries.
  IndexBatch b;
  b.PutDirEntry(kRootIno, "Q", 5, S_IFREG);
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));

  auto all = Queue();
  EXPECT_EQ(all, want);
  auto some = Queue(4);
  ASSERT_EQ(some.size(), 4u);
  const std::vector<std::pair<Address, uint64_t>> first4(want.begin(),
                                                         want.begin() + 4);
  EXPECT_EQ(some, first4);
  EXPECT_TRUE(Queue(0).empty());
}

TEST_F(IndexTest, CompleteUploadKeepsAddressKnownAndDropsCounters) {
  const Address a = MakeAddress(1);
  const Address b = MakeAddress(2);
  ASSERT_TRUE(*index_->EnqueueStaged(a, 300));
  ASSERT_TRUE(*index_->EnqueueStaged(b, 700));
  WAVEFS_ASSERT_OK(index_->CompleteUpload(a, 300));
  EXPECT_TRUE(Known(a)) << "a stored chunk must still dedup";
  EXPECT_FALSE(Queued(a));
  EXPECT_TRUE(Queued(b));
  EXPECT_EQ(index_->pending_chunks(), 1u);
  EXPECT_EQ(index_->pending_bytes(), 700u);
  auto q = Queue();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].first, b);

  // A stored chunk is not queued again.
  auto again = index_->EnqueueStaged(a, 300);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(*again);
  EXPECT_EQ(index_->pending_chunks(), 1u);

  WAVEFS_ASSERT_OK(index_->CompleteUpload(b, 700));
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(index_->pending_bytes(), 0u);
  EXPECT_TRUE(Queue().empty());

  // Stored state survives a reopen too.
  Reopen();
  EXPECT_TRUE(Known(a));
  EXPECT_TRUE(Known(b));
  EXPECT_FALSE(Queued(a));
  EXPECT_EQ(index_->pending_chunks(), 0u);
}

TEST_F(IndexTest, CompleteUploadsCompletesAWaveAtOnce) {
  std::vector<std::pair<Address, uint64_t>> wave;
  for (uint32_t i = 1; i <= 5; ++i) {
    ASSERT_TRUE(*index_->EnqueueStaged(MakeAddress(i), 100 * i));
    if (i != 3) wave.emplace_back(MakeAddress(i), 100 * i);
  }
  WAVEFS_ASSERT_OK(index_->CompleteUploads(wave));
  EXPECT_EQ(index_->pending_chunks(), 1u);
  EXPECT_EQ(index_->pending_bytes(), 300u);
  for (const auto& [a, len] : wave) {
    EXPECT_FALSE(Queued(a));
    EXPECT_TRUE(Known(a));
  }
  EXPECT_TRUE(Queued(MakeAddress(3)));
  auto q = Queue();
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].first, MakeAddress(3));
  WAVEFS_ASSERT_OK(index_->CompleteUploads({}));
  EXPECT_EQ(index_->pending_chunks(), 1u);
  Reopen();
  EXPECT_EQ(index_->pending_chunks(), 1u);
  EXPECT_EQ(index_->pending_bytes(), 300u);
  EXPECT_TRUE(Known(MakeAddress(5)));
}

TEST_F(IndexTest, DropQueuedForgetsTheAddress) {
  const Address a = MakeAddress(1);
  const Address b = MakeAddress(2);
  ASSERT_TRUE(*index_->EnqueueStaged(a, 10));
  ASSERT_TRUE(*index_->EnqueueStaged(b, 20));
  WAVEFS_ASSERT_OK(index_->DropQueued(a, 10));
  EXPECT_FALSE(Queued(a));
  EXPECT_FALSE(Known(a)) << "a lost chunk must be staged again on next write";
  EXPECT_EQ(index_->pending_chunks(), 1u);
  EXPECT_EQ(index_->pending_bytes(), 20u);
  auto again = index_->EnqueueStaged(a, 10);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(*again);
  EXPECT_EQ(index_->pending_chunks(), 2u);
  EXPECT_EQ(index_->pending_bytes(), 30u);
}

TEST_F(IndexTest, PendingCountersAreRebuiltOnReopen) {
  for (uint32_t i = 1; i <= 5; ++i)
    ASSERT_TRUE(*index_->EnqueueStaged(MakeAddress(i), 1000 * i));
  WAVEFS_ASSERT_OK(index_->CompleteUpload(MakeAddress(2), 2000));
  WAVEFS_ASSERT_OK(index_->DropQueued(MakeAddress(4), 4000));
  const uint64_t want_bytes = 1000 + 3000 + 5000;
  EXPECT_EQ(index_->pending_chunks(), 3u);
  EXPECT_EQ(index_->pending_bytes(), want_bytes);

  Reopen();
  EXPECT_EQ(index_->pending_chunks(), 3u);
  EXPECT_EQ(index_->pending_bytes(), want_bytes);
  auto q = Queue();
  ASSERT_EQ(q.size(), 3u);
  uint64_t sum = 0;
  for (const auto& [a, len] : q) sum += len;
  EXPECT_EQ(sum, want_bytes);
  EXPECT_TRUE(Queued(MakeAddress(1)));
  EXPECT_FALSE(Queued(MakeAddress(2)));
  EXPECT_TRUE(Known(MakeAddress(2)));
  EXPECT_FALSE(Known(MakeAddress(4)));

  // Counters keep working from the rebuilt values.
  WAVEFS_ASSERT_OK(index_->CompleteUpload(MakeAddress(1), 1000));
  EXPECT_EQ(index_->pending_chunks(), 2u);
  EXPECT_EQ(index_->pending_bytes(), want_bytes - 1000);
}

// A small chunk staged in the index: its body goes in with the queue entry
// and out with it, whether the upload completed or the chunk was dropped,
// and the bytes waiting there are counted again after a reopen.
TEST_F(IndexTest, StagedBodyComesAndGoesWithItsQueueEntry) {
  const std::vector<uint8_t> body_a(3000, 0xa1), body_c(5000, 0xc3);
  const Address a = MakeAddress(1), b = MakeAddress(2), c = MakeAddress(3);
  ASSERT_TRUE(*index_->EnqueueStaged(a, body_a.size(), body_a));
  ASSERT_TRUE(*index_->EnqueueStaged(b, 4 << 20));  // in the spill
  ASSERT_TRUE(*index_->EnqueueStaged(c, body_c.size(), body_c));
  // A second stage of a known address adds nothing, body or not.
  ASSERT_FALSE(*index_->EnqueueStaged(a, body_a.size(), body_a));
  EXPECT_EQ(index_->staged_body_bytes(), 8000u);

  std::vector<uint8_t> got;
  WAVEFS_ASSERT_OK(index_->ReadStagedBody(a, &got));
  EXPECT_EQ(got, body_a);
  EXPECT_EQ(index_->ReadStagedBody(b, &got).code(), Code::kNotFound);
  EXPECT_TRUE(*index_->HasStagedBody(c));
  EXPECT_FALSE(*index_->HasStagedBody(b));

  Reopen();
  EXPECT_EQ(index_->staged_body_bytes(), 8000u);
  WAVEFS_ASSERT_OK(index_->ReadStagedBody(c, &got));
  EXPECT_EQ(got, body_c);

  WAVEFS_ASSERT_OK(index_->CompleteUploads({{a, body_a.size()}, {b, 4 << 20}}));
  EXPECT_EQ(index_->ReadStagedBody(a, &got).code(), Code::kNotFound);
  EXPECT_EQ(index_->staged_body_bytes(), 5000u);
  EXPECT_TRUE(Known(a));
  WAVEFS_ASSERT_OK(index_->DropQueued(c, body_c.size()));
  EXPECT_FALSE(*index_->HasStagedBody(c));
  EXPECT_EQ(index_->staged_body_bytes(), 0u);
  Reopen();
  EXPECT_EQ(index_->staged_body_bytes(), 0u);
  EXPECT_EQ(index_->pending_chunks(), 0u);
}

// A chunk queued with a hold while the uploader looks at the queue is
// never handed out: the look copies the holds and snapshots the queue
// under the lock EnqueueStaged takes for its write and its hold. The hook
// queues one at the point the look has left the lock and not yet scanned.
// (With the snapshot taken after the lock, such a chunk was handed out
// unheld, and the uploader's claim ended its hold: EvictedChunksTest saw
// one evicted version uploaded about once in ten runs under ASan.)
TEST_F(IndexTest, AChunkHeldWhileTheUploaderLooksIsNotHandedOut) {
  const std::vector<uint8_t> body(100, 0x33);
  const Address a = MakeAddress(4242);
  const Index::StageOwner owner{5, 0, std::chrono::hours(1)};
  bool queued = false;
  SetPeekQueueHookForTesting([&] {
    if (queued) return;
    queued = true;
    auto r = index_->EnqueueStaged(a, body.size(), body, &owner);
    ASSERT_TRUE(r.ok() && *r);
  });
  std::vector<std::pair<Address, uint64_t>> q;
  Status st = index_->PeekQueue(100, &q, false);
  SetPeekQueueHookForTesting(nullptr);
  WAVEFS_ASSERT_OK(st);
  ASSERT_TRUE(queued);
  EXPECT_TRUE(q.empty()) << "a held chunk was handed out";
  EXPECT_EQ(index_->held_chunks(), 1u);
  // The next look sees it queued, and held.
  WAVEFS_ASSERT_OK(index_->PeekQueue(100, &q, false));
  EXPECT_TRUE(q.empty());
  WAVEFS_ASSERT_OK(index_->PeekQueue(100, &q, true));
  EXPECT_EQ(q.size(), 1u);
}

// Held chunks: left out of the uploader's look until the hold ends,
// dropped (queue entry, body, address) when their file's commit no longer
// names them, and kept for good by anything else that names them.
TEST_F(IndexTest, HeldChunksWaitAndGoOnlyWhenTheirFileReplacedThem) {
  const std::vector<uint8_t> body(700, 0x5a);
  const auto hour = std::chrono::hours(1);
  auto stage = [&](uint32_t seed, uint64_t ino, uint64_t idx) {
    const Index::StageOwner owner{ino, idx, hour};
    auto r =
        index_->EnqueueStaged(MakeAddress(seed), body.size(), body, &owner);
    EXPECT_TRUE(r.ok() && *r);
    return MakeAddress(seed);
  };
  const Address a = stage(1, 5, 0), b = stage(2, 5, 1), c = stage(3, 6, 0);
  const Address plain = MakeAddress(4);
  ASSERT_TRUE(*index_->EnqueueStaged(plain, body.size(), body));  // no owner
  EXPECT_EQ(index_->held_chunks(), 3u);

  // The uploader's look leaves them out (and says when to look again);
  // a drain's look takes them too.
  std::vector<std::pair<Address, uint64_t>> q;
  auto release = std::chrono::steady_clock::now() + std::chrono::hours(2);
  WAVEFS_ASSERT_OK(index_->PeekQueue(100, &q, false, &release));
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].first, plain);
  EXPECT_LT(release, std::chrono::steady_clock::now() + std::chrono::hours(2));
  WAVEFS_ASSERT_OK(index_->PeekQueue(100, &q, true));
  EXPECT_EQ(q.size(), 4u);

  // Inode 5's commit replaced chunk 0 and kept chunk 1: only a goes.
  auto dropped = index_->DropSuperseded(
      5, [&](uint64_t idx, const Address&) { return idx != 0; });
  ASSERT_TRUE(dropped.ok()) << dropped.status().ToString();
  EXPECT_EQ(*dropped, 1u);
  EXPECT_FALSE(Queued(a));
  EXPECT_FALSE(Known(a)) << "a later stage of the same bytes queues it again";
  EXPECT_FALSE(*index_->HasStagedBody(a));
  EXPECT_TRUE(Queued(b));
  EXPECT_EQ(index_->pending_chunks(), 3u);
  EXPECT_EQ(index_->staged_body_bytes(), 3 * body.size());
  EXPECT_EQ(index_->superseded_chunks(), 1u);
  EXPECT_EQ(index_->superseded_bytes(), body.size());
  // The uploader listed it before the drop: it must not put it.
  EXPECT_FALSE(*index_->ClaimForUpload(a));
  EXPECT_TRUE(*index_->ClaimForUpload(plain));

  // Whatever else names a held chunk ends its hold for good.
  const Address d = stage(5, 7, 0), e = stage(6, 7, 1), f = stage(7, 7, 2),
                g = stage(8, 7, 3);
  auto known = index_->LookupForRef(d);  // a dedup hit
  ASSERT_TRUE(known.ok() && *known);
  EXPECT_FALSE(*index_->EnqueueStaged(e, body.size(), body));  // the same
  index_->Retain(f);                                           // a copy
  EXPECT_TRUE(*index_->ClaimForUpload(g));                     // the upload
  auto none =
      index_->DropSuperseded(7, [](uint64_t, const Address&) { return false; });
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0u);
  for (const Address& x : {d, e, f, g}) EXPECT_TRUE(Queued(x));

  // An index snapshot's view ends every hold; so does completing b.
  WAVEFS_ASSERT_OK(index_->CompleteUploads({{b, body.size()}}));
  EXPECT_EQ(index_->held_chunks(), 1u);  // c
  index_->NewViewRetainingAll();
  EXPECT_EQ(index_->held_chunks(), 0u);
  auto after_view =
      index_->DropSuperseded(6, [](uint64_t, const Address&) { return false; });
  ASSERT_TRUE(after_view.ok());
  EXPECT_EQ(*after_view, 0u);
  EXPECT_TRUE(Queued(c));

  // A replacement waits no longer than what it replaced would have: a file
  // rewritten without pause still gets a version uploaded once per hold.
  const Address v1 = stage(10, 9, 0);
  const auto before_v2 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const Address v2 = stage(11, 9, 0);  // its own hold ends after v1's
  ASSERT_EQ(*index_->DropSuperseded(
                9, [&](uint64_t, const Address& x) { return x == v2; }),
            1u);
  EXPECT_FALSE(Queued(v1));
  auto inherited = std::chrono::steady_clock::now() + std::chrono::hours(3);
  WAVEFS_ASSERT_OK(index_->PeekQueue(100, &q, false, &inherited));
  EXPECT_LE(inherited, before_v2 + hour) << "v2 now ends with v1's hold";
  EXPECT_TRUE(*index_->ClaimForUpload(v2));

  // Holds live in memory only.
  const Address h = stage(9, 8, 0);
  Reopen();
  EXPECT_EQ(index_->held_chunks(), 0u);
  EXPECT_TRUE(Queued(h));
  EXPECT_EQ(index_->pending_chunks(), 8u);  // plain, c, d, e, f, g, v2, h
}

TEST_F(IndexTest, EmptyQueueAfterReopenHasZeroCounters) {
  Reopen();
  EXPECT_EQ(index_->pending_chunks(), 0u);
  EXPECT_EQ(index_->pending_bytes(), 0u);
  EXPECT_TRUE(Queue().empty());
}

TEST_F(IndexTest, ConcurrentEnqueueOfOneAddressQueuesItOnce) {
  const Address a = MakeAddress(77);
  std::atomic<int> added{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto r = index_->EnqueueStaged(a, 64);
        if (r.ok() && *r) added += 1;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(added.load(), 1);
  EXPECT_EQ(index_->pending_chunks(), 1u);
  EXPECT_EQ(index_->pending_bytes(), 64u);
}

// ------------------------------------------------------------------ locking

TEST_F(IndexTest, SecondOpenOfSameDirectoryIsRefused) {
  auto second = Index::Open(dir(), Index::Options{});
  ASSERT_FALSE(second.ok()) << "two indexes open on one directory";
  EXPECT_FALSE(second.status().message().empty());
  EXPECT_EQ(second.status().code(), Code::kBusy) << second.status().ToString();
  // The first one still works.
  auto root = index_->GetInode(kRootIno);
  EXPECT_TRUE(root.ok());
}

TEST_F(IndexTest, OpenSucceedsAgainAfterClose) {
  WAVEFS_ASSERT_OK(index_->Close());
  auto again = Index::Open(dir(), Index::Options{});
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  index_ = std::move(*again);
  EXPECT_TRUE(index_->GetInode(kRootIno).ok());
}

}  // namespace
}  // namespace wavefs
