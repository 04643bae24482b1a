// The everyday file operations of issue 7 that must behave as on ext4:
// O_TRUNC at open, extended attributes, fallocate, SEEK_DATA/SEEK_HOLE,
// copy_file_range, RENAME_EXCHANGE, fsyncdir, set-group-ID directories and
// the errnos that reach the caller.
#include <fcntl.h>
#include <unistd.h>

#include "fs/filesystem.h"
#include "fs_fixture.h"

namespace wavefs {
namespace {

using namespace fs_testing;  // NOLINT
using namespace std::chrono_literals;

std::vector<std::pair<uint64_t, ChunkRef>> Refs(Filesystem* fs, uint64_t ino) {
  auto map = fs->GetDataMap(ino);
  EXPECT_TRUE(map.ok()) << map.status().ToString();
  return map.ok() ? map->chunks : std::vector<std::pair<uint64_t, ChunkRef>>{};
}

// Regression: `cp small big` and `echo hi > f` kept the old tail.
TEST_F(FsTest, OpenWithTruncEmptiesAnExistingFile) {
  const uint64_t ino = WriteFile("f", "0123456789");
  auto h = fs_->Open(ino, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(SizeOf(ino), 0u);
  WriteAt(h->get(), 0, "hi\n");
  WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
  EXPECT_EQ(ReadFile(ino), "hi\n");

  // A file of several chunks, overwritten by a shorter one.
  const std::string big = RandomBytes(9 * kC / 4, 11);
  const std::string small = RandomBytes(5 * kC / 4, 12);
  const uint64_t b = WriteFile("big", big);
  auto hb = fs_->Open(b, O_WRONLY | O_CREAT | O_TRUNC);
  ASSERT_TRUE(hb.ok());
  WriteAt(hb->get(), 0, small);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(*hb)));
  EXPECT_TRUE(SameBytes(small, ReadFile(b)));
  EXPECT_EQ(Refs(fs_.get(), b).size(), 2u);  // the old third chunk is gone
  Remount();
  EXPECT_EQ(ReadFile(ino), "hi\n");
  EXPECT_TRUE(SameBytes(small, ReadFile(b)));
}

TEST_F(FsTest, OpenWithTruncDiscardsAnotherHandlesDirtyBuffers) {
  const uint64_t ino = WriteFile("f", RandomBytes(kC + 5, 13));
  auto writer = OpenH(ino);
  WriteAt(writer.get(), 0, RandomBytes(kC / 2, 14));  // dirty, uncommitted
  auto h = fs_->Open(ino, O_RDWR | O_TRUNC);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(SizeOf(ino), 0u);
  WAVEFS_EXPECT_OK(fs_->Release(std::move(writer)));
  WAVEFS_EXPECT_OK(fs_->Release(std::move(*h)));
  EXPECT_EQ(SizeOf(ino), 0u);
  EXPECT_TRUE(Refs(fs_.get(), ino).empty());
  Remount();
  EXPECT_EQ(SizeOf(ino), 0u);
}

TEST_F(FsTest, ExtendedAttributesBehaveAsOnExt4) {
  const uint64_t ino = WriteFile("f", "x");
  auto code = [](const Status& s) { return ErrnoOf(s); };
  EXPECT_EQ(code(fs_->GetXattr(ino, "user.a").status()), ENODATA);
  WAVEFS_ASSERT_OK(fs_->SetXattr(ino, "user.a", "one", 0));
  WAVEFS_ASSERT_OK(fs_->SetXattr(ino, "user.empty", "", 0));
  EXPECT_EQ(code(fs_->SetXattr(ino, "user.a", "two", kXattrCreate)), EEXIST);
  EXPECT_EQ(code(fs_->SetXattr(ino, "user.b", "two", kXattrReplace)), ENODATA);
  WAVEFS_ASSERT_OK(fs_->SetXattr(ino, "user.a", "two", kXattrReplace));
  EXPECT_EQ(*fs_->GetXattr(ino, "user.a"), "two");
  EXPECT_EQ(*fs_->GetXattr(ino, "user.empty"), "");
  EXPECT_EQ(*fs_->ListXattr(ino), std::string("user.a\0user.empty\0", 18));
  // wavefs's own names are read-only; unknown namespaces are refused.
  EXPECT_EQ(code(fs_->SetXattr(ino, "user.wavefs.state", "x", 0)), EPERM);
  EXPECT_EQ(code(fs_->RemoveXattr(ino, "user.wavefs.datamap")), EPERM);
  EXPECT_EQ(code(fs_->SetXattr(ino, "system.posix_acl_access", "x", 0)),
            EOPNOTSUPP);
  // Values up to 64 KiB; larger is E2BIG.
  const std::string big(kMaxXattrValue, 'v');
  WAVEFS_ASSERT_OK(fs_->SetXattr(ino, "user.big", big, 0));
  EXPECT_EQ(code(fs_->SetXattr(ino, "user.big", big + "v", 0)), E2BIG);
  WAVEFS_ASSERT_OK(fs_->RemoveXattr(ino, "user.empty"));
  EXPECT_EQ(code(fs_->RemoveXattr(ino, "user.empty")), ENODATA);
  // Directories carry them too; a missing inode is ENOENT.
  const uint64_t d = Create("d", kRootIno, kDirMode);
  WAVEFS_ASSERT_OK(fs_->SetXattr(d, "user.dir", "yes", 0));
  EXPECT_EQ(code(fs_->GetXattr(999999, "user.a").status()), ENOENT);
  Remount();
  EXPECT_EQ(*fs_->GetXattr(ino, "user.a"), "two");
  EXPECT_EQ(*fs_->GetXattr(ino, "user.big"), big);
  EXPECT_EQ(*fs_->GetXattr(d, "user.dir"), "yes");
  // They go with the inode.
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "f"));
  EXPECT_EQ(index_->GetXattr(ino, "user.a").status().code(), Code::kNotFound);
}

// ls -l asks every file for its SELinux label (lgetfilecon) unless the
// filesystem says it has none (EOPNOTSUPP, not ENODATA); other security.*
// attributes (file capabilities: setcap) are kept as on ext4.
TEST_F(FsTest, SelinuxLabelsAreNotSupportedOtherSecurityAttributesAre) {
  const uint64_t ino = WriteFile("f", "x");
  auto code = [](const Status& s) { return ErrnoOf(s); };
  EXPECT_EQ(code(fs_->GetXattr(ino, "security.selinux").status()), EOPNOTSUPP);
  EXPECT_EQ(code(fs_->SetXattr(ino, "security.selinux", "u:r:t:s0", 0)),
            EOPNOTSUPP);
  EXPECT_EQ(code(fs_->RemoveXattr(ino, "security.selinux")), EOPNOTSUPP);
  EXPECT_EQ(code(fs_->GetXattr(ino, "security.capability").status()), ENODATA);
  const std::string caps("\x01\x00\x00\x02\x00\x04\x00\x00", 8);
  WAVEFS_ASSERT_OK(fs_->SetXattr(ino, "security.capability", caps, 0));
  EXPECT_EQ(*fs_->GetXattr(ino, "security.capability"), caps);
  // A label stored by an older wavefs is not listed.
  IndexBatch b;
  b.PutXattr(ino, "security.selinux", "u:r:t:s0");
  WAVEFS_ASSERT_OK(index_->Commit(&b, false));
  EXPECT_EQ(*fs_->ListXattr(ino), std::string("security.capability\0", 20));
}

TEST_F(FsTest, ExtendedAttributeNamesAreLimitedToWhatListxattrReturns) {
  const uint64_t ino = WriteFile("f", "x");
  Status st;
  int n = 0;
  for (; n < 1000 && st.ok(); ++n)
    st = fs_->SetXattr(ino, "user." + std::string(200, 'a') + std::to_string(n),
                       "", 0);
  EXPECT_EQ(ErrnoOf(st), ENOSPC);
  EXPECT_LE(fs_->ListXattr(ino)->size(), kMaxXattrList);
  EXPECT_GT(n, 300);
}

TEST_F(FsTest, FallocateModes) {
  const std::string data = RandomBytes(3 * kC + 100, 21);
  const uint64_t ino = WriteFile("f", data);
  auto h = OpenH(ino);
  // Mode 0 extends; KEEP_SIZE does not.
  WAVEFS_ASSERT_OK(fs_->Fallocate(h.get(), 0, 3 * kC, kC));
  EXPECT_EQ(SizeOf(ino), 4 * kC);
  WAVEFS_ASSERT_OK(fs_->Fallocate(h.get(), kFallocKeepSize, 0, 9 * kC));
  EXPECT_EQ(SizeOf(ino), 4 * kC);
  // Punch from inside chunk 0 through all of chunk 1 into chunk 2.
  WAVEFS_ASSERT_OK(fs_->Fallocate(h.get(), kFallocPunchHole | kFallocKeepSize,
                                  kC - 10, kC + 30));
  // Zero range past the end extends the file.
  WAVEFS_ASSERT_OK(
      fs_->Fallocate(h.get(), kFallocZeroRange, 3 * kC + 50, kC + 10));
  EXPECT_EQ(SizeOf(ino), 4 * kC + 60);
  EXPECT_EQ(fs_->Fallocate(h.get(), 0x08 /* COLLAPSE_RANGE */, 0, kC).code(),
            Code::kNotSupported);
  EXPECT_EQ(fs_->Fallocate(h.get(), kFallocPunchHole, 0, kC).code(),
            Code::kNotSupported);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  std::string want = data;
  want.resize(4 * kC + 60, '\0');
  std::fill(want.begin() + (kC - 10), want.begin() + (2 * kC + 20), '\0');
  std::fill(want.begin() + (3 * kC + 50), want.end(), '\0');
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
  // The whole zeroed chunk is a hole, not stored data.
  bool hole1 = false;
  for (auto& [i, r] : Refs(fs_.get(), ino))
    if (i == 1) hole1 = r.hole;
  EXPECT_TRUE(hole1);
  Remount();
  EXPECT_TRUE(SameBytes(want, ReadFile(ino)));
}

TEST_F(FsTest, SeekDataAndHoleFollowTheChunks) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  WriteAt(h.get(), 0, RandomBytes(100, 31));          // chunk 0: data
  WriteAt(h.get(), 3 * kC + 5, RandomBytes(10, 32));  // chunk 3: data
  const uint64_t size = 3 * kC + 15;
  auto seek = [&](uint64_t off, int whence) {
    return fs_->SeekDataHole(h.get(), off, whence);
  };
  for (int pass = 0; pass < 2; ++pass) {  // dirty, then committed
    SCOPED_TRACE(pass == 0 ? "dirty" : "committed");
    EXPECT_EQ(*seek(0, SEEK_DATA), 0u);
    EXPECT_EQ(*seek(50, SEEK_HOLE), kC);
    EXPECT_EQ(*seek(kC + 1, SEEK_DATA), 3 * kC);
    EXPECT_EQ(*seek(kC + 1, SEEK_HOLE), kC + 1);
    EXPECT_EQ(*seek(3 * kC + 1, SEEK_HOLE), size);
    EXPECT_EQ(ErrnoOf(seek(size, SEEK_DATA).status()), ENXIO);
    EXPECT_EQ(ErrnoOf(seek(size, SEEK_HOLE).status()), ENXIO);
    WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
  }
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
}

// While a handle opened O_RDWR is open, a shared writable mapping may hold
// pages the daemon has not seen (the kernel keeps them until msync or
// munmap and does not write them back for lseek): every byte is data and
// the end is the only hole. When it closes, the chunks count again.
TEST_F(FsTest, SeekDataAndHoleSeeAllDataWhileAReadWriteHandleIsOpen) {
  const uint64_t ino = Create("f");
  auto h = OpenH(ino);
  WriteAt(h.get(), 0, RandomBytes(100, 33));
  WriteAt(h.get(), 3 * kC + 5, RandomBytes(10, 34));
  const uint64_t size = 3 * kC + 15;
  WAVEFS_ASSERT_OK(fs_->Flush(h.get()));
  auto rw = fs_->Open(ino, O_RDWR);
  ASSERT_TRUE(rw.ok()) << rw.status().ToString();
  for (FileHandle* via : {h.get(), rw->get()}) {
    EXPECT_EQ(*fs_->SeekDataHole(via, kC + 1, SEEK_DATA), kC + 1);
    EXPECT_EQ(*fs_->SeekDataHole(via, 50, SEEK_HOLE), size);
    EXPECT_EQ(ErrnoOf(fs_->SeekDataHole(via, size, SEEK_DATA).status()), ENXIO);
  }
  WAVEFS_ASSERT_OK(fs_->Release(std::move(*rw)));
  EXPECT_EQ(*fs_->SeekDataHole(h.get(), kC + 1, SEEK_DATA), 3 * kC);
  EXPECT_EQ(*fs_->SeekDataHole(h.get(), 50, SEEK_HOLE), kC);
  // A truncating read-write open counts the same, until it closes.
  auto rwt = fs_->Open(ino, O_RDWR | O_TRUNC);
  ASSERT_TRUE(rwt.ok()) << rwt.status().ToString();
  WriteAt(rwt->get(), 2 * kC, RandomBytes(10, 35));
  EXPECT_EQ(*fs_->SeekDataHole(h.get(), 0, SEEK_HOLE), 2 * kC + 10);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(*rwt)));
  EXPECT_EQ(*fs_->SeekDataHole(h.get(), 0, SEEK_DATA), 2 * kC);
  EXPECT_EQ(*fs_->SeekDataHole(h.get(), 0, SEEK_HOLE), 0u);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
}

TEST_F(FsTest, CopyRangeSharesWholeChunksAndCopiesTheRest) {
  const std::string data = RandomBytes(3 * kC + 777, 41);
  const uint64_t src = WriteFile("src", data);
  Drain();
  const uint64_t puts = store_->puts();
  const size_t spilled = SpillCount();
  const uint64_t dst = Create("dst");
  auto in = OpenH(src);
  auto out = OpenH(dst);
  auto n = fs_->CopyRange(in.get(), 0, out.get(), 0, 1ull << 40);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, data.size());
  EXPECT_EQ(SpillCount(), spilled);  // nothing staged: refs were shared
  WAVEFS_ASSERT_OK(fs_->Release(std::move(out)));
  EXPECT_TRUE(SameBytes(data, ReadFile(dst)));
  EXPECT_EQ(Refs(fs_.get(), dst), Refs(fs_.get(), src));

  // Unaligned: through the data paths, into the middle of a bigger file.
  const uint64_t mid = WriteFile("mid", RandomBytes(4 * kC, 42));
  std::string want = ReadFile(mid);
  auto out2 = OpenH(mid);
  auto m = fs_->CopyRange(in.get(), 1000, out2.get(), kC + 3, 2 * kC);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, 2 * kC);
  want.replace(kC + 3, 2 * kC, data.substr(1000, 2 * kC));
  // Aligned, but the short last source chunk may not replace a destination
  // chunk that has bytes after it.
  auto k = fs_->CopyRange(in.get(), 3 * kC, out2.get(), 0, kC);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(*k, 777u);
  want.replace(0, 777, data.substr(3 * kC, 777));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(out2)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(in)));
  EXPECT_TRUE(SameBytes(want, ReadFile(mid)));
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(dst)));
  EXPECT_TRUE(SameBytes(want, ReadFile(mid)));
  Drain();
  // dst added nothing to the store: mid's 4 chunks, then its chunks 1-3
  // rewritten by the unaligned copy and chunk 0 by the short one, are all
  // that went up.
  EXPECT_EQ(store_->puts(), puts + 4 + 3 + 1);
}

// With the writeback cache the kernel keeps a file's times: writes,
// copies, fallocate and O_TRUNC leave them alone, and the setattr that
// brings the kernel's mtime and ctime is kept as sent, across a remount.
TEST_F(FsTest, WritesLeaveTheTimesToTheKernelWhenItKeepsThem) {
  const uint64_t ino = WriteFile("f", "0123456789");
  const uint64_t src = WriteFile("src", RandomBytes(2 * kC, 51));
  fs_->SetKernelKeepsTimes(true);
  AttrChange kernel;
  kernel.mtime = timespec{1000, 1};
  kernel.ctime = timespec{2000, 2};
  ASSERT_TRUE(fs_->SetAttr(ino, kernel).ok());
  auto h = OpenH(ino);
  WriteAt(h.get(), 3, "abc");
  auto in = OpenH(src);
  auto n = fs_->CopyRange(in.get(), 0, h.get(), kC, kC);  // shares a chunk
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  auto n2 = fs_->CopyRange(in.get(), 5, h.get(), 2, 4);  // copies bytes
  ASSERT_TRUE(n2.ok()) << n2.status().ToString();
  WAVEFS_ASSERT_OK(fs_->Fallocate(h.get(), 0, 0, 2 * kC + 10));  // grows
  WAVEFS_ASSERT_OK(fs_->Fallocate(h.get(), 3, 0, 5));            // punches
  WAVEFS_ASSERT_OK(fs_->Release(std::move(in)));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  auto a = fs_->GetAttr(ino);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, 2 * kC + 10);
  auto t = fs_->Open(ino, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  WAVEFS_ASSERT_OK(fs_->Release(std::move(*t)));
  a = fs_->GetAttr(ino);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, 0u);
  EXPECT_EQ(a->mtime.tv_sec, 1000);
  EXPECT_EQ(a->mtime.tv_nsec, 1);
  EXPECT_EQ(a->ctime.tv_sec, 2000);
  EXPECT_EQ(a->ctime.tv_nsec, 2);
  Remount();
  a = fs_->GetAttr(ino);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->mtime.tv_sec, 1000);
  EXPECT_EQ(a->ctime.tv_sec, 2000);

  // The daemon's clock otherwise (the fixture's new Filesystem keeps none).
  auto h2 = OpenH(ino);
  WriteAt(h2.get(), 0, "z");
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h2)));
  a = fs_->GetAttr(ino);
  ASSERT_TRUE(a.ok());
  EXPECT_GT(a->mtime.tv_sec, 1000);
  EXPECT_GT(a->ctime.tv_sec, 2000);
}

TEST_F(FsTest, RenameExchangeAcrossDirectoriesMovesDotDotLinks) {
  const uint64_t d1 = Create("d1", kRootIno, kDirMode);
  const uint64_t d2 = Create("d2", kRootIno, kDirMode);
  const uint64_t sub = Create("sub", d1, kDirMode);
  const uint64_t file = WriteFile("file", "payload", d2);
  EXPECT_EQ(fs_->GetAttr(d1)->nlink, 3u);
  EXPECT_EQ(fs_->GetAttr(d2)->nlink, 2u);
  WAVEFS_ASSERT_OK(fs_->Rename(d1, "sub", d2, "file", kRenameExchange));
  EXPECT_EQ(fs_->Lookup(d1, "sub")->ino, file);
  EXPECT_EQ(fs_->Lookup(d2, "file")->ino, sub);
  EXPECT_EQ(fs_->GetAttr(d1)->nlink, 2u);
  EXPECT_EQ(fs_->GetAttr(d2)->nlink, 3u);
  Remount();
  EXPECT_EQ(ReadFile(fs_->Lookup(d1, "sub")->ino), "payload");
  EXPECT_EQ(fs_->GetAttr(d2)->nlink, 3u);
  WAVEFS_EXPECT_OK(fs_->FsyncDir());
}

TEST_F(FsTest, SetGroupIdDirectoryPassesItsGroupOn) {
  const uint64_t d = Create("d", kRootIno, S_IFDIR | 02775);
  AttrChange c;
  c.gid = 4242;
  ASSERT_TRUE(fs_->SetAttr(d, c).ok());
  auto f = fs_->MakeNode(d, "f", kFileMode, 0, 1000, 1000);
  auto sub = fs_->MakeNode(d, "sub", kDirMode, 0, 1000, 1000);
  ASSERT_TRUE(f.ok() && sub.ok());
  EXPECT_EQ(f->gid, 4242u);
  EXPECT_EQ(sub->gid, 4242u);
  EXPECT_TRUE(sub->mode & S_ISGID);
  EXPECT_FALSE(f->mode & S_ISGID);
}

TEST_F(FsTest, MissingChunkReadsAsEioNotEnoent) {
  const std::string data = RandomBytes(kC, 51);
  const uint64_t ino = WriteFile("f", data);
  Drain();
  Remount();  // nothing cached
  auto refs = Refs(fs_.get(), ino);
  ASSERT_EQ(refs.size(), 1u);
  WAVEFS_ASSERT_OK(memory_->Remove(refs[0].second.address));
  auto h = OpenH(ino);
  std::string buf(4096, '\0');
  auto r = fs_->Read(h.get(), 0, buf.size(), buf.data());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrnoOf(r.status()), EIO);
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
}

// S3 mounts read random ranges through 1 MiB windows: the kernel's 128 KiB
// pieces of one 1 MiB read cost one fetch per window, not one each; the
// bytes are the same as through exact segment reads.
TEST_F(FsTest, ReadWindowsServeTheKernelsPiecesWithOneFetch) {
  const std::string data = RandomBytes(2 * kC + 12345, 61);
  const uint64_t ino = WriteFile("f", data);
  Drain();
  FsOptions o = TestOptions();
  o.read_window = 1 << 20;
  o.prefetch_depth = 2;
  Remount(o);
  auto h = OpenH(ino);
  const uint64_t gets = store_->gets();
  // A 1 MiB read at a window boundary, in 128 KiB pieces (a new run each
  // time: random reads).
  std::string got = ReadAt(h.get(), kC + (2 << 20), 1 << 20, 128 << 10);
  EXPECT_TRUE(SameBytes(data.substr(kC + (2 << 20), 1 << 20), got));
  EXPECT_EQ(store_->gets() - gets, 1u);
  // Straddling two windows and a chunk end; the last, short chunk.
  got = ReadAt(h.get(), kC - 5000, 700000, 128 << 10);
  EXPECT_TRUE(SameBytes(data.substr(kC - 5000, 700000), got));
  got = ReadAt(h.get(), 2 * kC + 100, 20000, 4096);
  EXPECT_TRUE(SameBytes(data.substr(2 * kC + 100, 20000), got));
  // And a whole sequential read with prefetch two chunks deep.
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

// Once the kernel sends a whole 1 MiB read in one request (the mount's
// readahead raised, fs/kernel_readahead.h), windows would turn a read that
// straddles two of them into two fetches of 1 MiB each; without windows it
// is one fetch of the segments it covers.
TEST_F(FsTest, WithoutWindowsAWholeReadIsOneFetchOfItsSegments) {
  const std::string data = RandomBytes(2 * kC, 62);
  const uint64_t ino = WriteFile("f", data);
  Drain();
  FsOptions o = TestOptions();
  o.read_window = 1 << 20;
  Remount(o);
  const uint64_t at = kC + (1 << 19);  // half a window in
  auto h = OpenH(ino);
  uint64_t gets = store_->gets(), bytes = store_->bytes_got();
  std::string got = ReadAt(h.get(), at, 1 << 20, 1 << 20);
  EXPECT_TRUE(SameBytes(data.substr(at, 1 << 20), got));
  EXPECT_EQ(store_->gets() - gets, 2u) << "windows: one fetch per window";
  EXPECT_GE(store_->bytes_got() - bytes, 2u << 20);
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));

  Remount(o);
  fs_->DisableReadWindows();
  h = OpenH(ino);
  gets = store_->gets();
  bytes = store_->bytes_got();
  got = ReadAt(h.get(), at, 1 << 20, 1 << 20);
  EXPECT_TRUE(SameBytes(data.substr(at, 1 << 20), got));
  EXPECT_EQ(store_->gets() - gets, 1u);
  // 16 segments of 64 KiB and their tags, nothing around them.
  EXPECT_LE(store_->bytes_got() - bytes, (1u << 20) + 16 * 64);
  EXPECT_GE(store_->bytes_got() - bytes, 1u << 20);
  // Unaligned to segments too: 17 segments, still one fetch.
  gets = store_->gets();
  got = ReadAt(h.get(), at + 1000, 1 << 20, 1 << 20);
  EXPECT_TRUE(SameBytes(data.substr(at + 1000, 1 << 20), got));
  EXPECT_EQ(store_->gets() - gets, 1u);
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
}

TEST(ErrnoMapTest, KeepsTheSavedErrnoWhereItSaysMore) {
  EXPECT_EQ(ErrnoOf(Status::FromErrno(EROFS, "x")), EROFS);
  EXPECT_EQ(ErrnoOf(Status::FromErrno(EMFILE, "x")), EMFILE);
  EXPECT_EQ(ErrnoOf(Status::FromErrno(ENOMEM, "x")), ENOMEM);
  EXPECT_EQ(ErrnoOf(Status::FromErrno(EDQUOT, "x")), EDQUOT);
  EXPECT_EQ(ErrnoOf(Status::FromErrno(ENOSPC, "x")), ENOSPC);
  EXPECT_EQ(ErrnoOf(Status::FromErrno(EIO, "x")), EIO);
  EXPECT_EQ(ErrnoOf(Status::Error(Code::kIo, "x", ECONNRESET)), EIO);
  EXPECT_EQ(ErrnoOf(Status::Error(Code::kCorrupt, "x")), EIO);
  EXPECT_EQ(ErrnoOf(Status::Error(Code::kNotFound, "x", ENODATA)), ENODATA);
  EXPECT_EQ(ErrnoOf(Status::Error(Code::kNotFound, "x")), ENOENT);
}

}  // namespace
}  // namespace wavefs
