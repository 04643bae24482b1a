#include "store/file_util.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::MakeBytes;
using testing_util::ModeOf;
using testing_util::NamesIn;
using testing_util::PathExists;
using testing_util::ReadTestFile;
using testing_util::TempDir;
using testing_util::WriteTestFile;

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

class FileUtilTest : public ::testing::Test {
 protected:
  void SetUp() override { tmp_ = std::make_unique<TempDir>(); }
  void TearDown() override { tmp_.reset(); }
  std::string P(const std::string& name) const { return *tmp_ / name; }

  std::unique_ptr<TempDir> tmp_;
};

TEST_F(FileUtilTest, WriteFileDurablyWritesContentAndMode) {
  WAVEFS_ASSERT_OK(WriteFileDurably(P("f"), AsBytes("hello"), 0600));
  EXPECT_EQ(ReadTestFile(P("f")), "hello");
  EXPECT_EQ(ModeOf(P("f")), 0600u);
  EXPECT_EQ(NamesIn(tmp_->path()), std::set<std::string>{"f"});
}

// What verify_puts compares a format-4 read-back with (Spill::Holds).
TEST_F(FileUtilTest, FileHoldsComparesEveryByteAndTheLength) {
  const auto big = MakeBytes((1 << 20) + 5, 2);  // pieces of 64 KiB, and more
  WAVEFS_ASSERT_OK(WriteFileDurably(P("f"), big));
  auto same = FileHolds(P("f"), big);
  ASSERT_TRUE(same.ok()) << same.status().ToString();
  EXPECT_TRUE(*same);
  auto flipped = big;
  flipped[700000] ^= 1;
  EXPECT_FALSE(*FileHolds(P("f"), flipped));
  auto shorter = big;
  shorter.pop_back();
  EXPECT_FALSE(*FileHolds(P("f"), shorter));
  auto longer = big;
  longer.push_back(0);
  EXPECT_FALSE(*FileHolds(P("f"), longer));
  EXPECT_EQ(FileHolds(P("absent"), big).status().code(), Code::kNotFound);
}

TEST_F(FileUtilTest, WriteFileDurablyReplacesExistingFile) {
  WriteTestFile(P("f"), "old content, longer than the new one");
  WAVEFS_ASSERT_OK(WriteFileDurably(P("f"), AsBytes("new")));
  EXPECT_EQ(ReadTestFile(P("f")), "new");
}

TEST_F(FileUtilTest, WriteFileDurablyWritesEmptyAndLargeFiles) {
  WAVEFS_ASSERT_OK(WriteFileDurably(P("empty"), {}));
  EXPECT_EQ(ReadTestFile(P("empty")), "");
  const auto big = MakeBytes(9 << 20, 1);
  WAVEFS_ASSERT_OK(WriteFileDurably(P("big"), big));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(ReadWholeFile(P("big"), &out));
  EXPECT_TRUE(out == big);
}

TEST_F(FileUtilTest, WriteIntoMissingDirectoryFailsAndNamesThePath) {
  const std::string path = P("missing/f");
  Status st = WriteFileDurably(path, AsBytes("x"));
  EXPECT_EQ(st.code(), Code::kNotFound) << st.ToString();
  EXPECT_NE(st.message().find(path), std::string::npos) << st.message();
  EXPECT_TRUE(NamesIn(tmp_->path()).empty());
}

TEST_F(FileUtilTest, FailedRenameLeavesNoTemporaryFile) {
  // The target is a non-empty directory, so the final rename fails.
  ASSERT_TRUE(std::filesystem::create_directories(P("target/inside")));
  for (bool durable : {true, false}) {
    Status st = durable ? WriteFileDurably(P("target"), AsBytes("x"))
                        : WriteFileAtomically(P("target"), AsBytes("x"));
    EXPECT_FALSE(st.ok());
    EXPECT_NE(st.message().find(P("target")), std::string::npos)
        << st.message();
    EXPECT_EQ(NamesIn(tmp_->path()), std::set<std::string>{"target"});
  }
}

TEST_F(FileUtilTest, WriteFileAtomicallyWritesContentAndMode) {
  WAVEFS_ASSERT_OK(WriteFileAtomically(P("f"), AsBytes("abc"), 0600));
  EXPECT_EQ(ReadTestFile(P("f")), "abc");
  EXPECT_EQ(ModeOf(P("f")), 0600u);
  WAVEFS_ASSERT_OK(WriteFileAtomically(P("f"), AsBytes("defg"), 0600));
  EXPECT_EQ(ReadTestFile(P("f")), "defg");
  EXPECT_EQ(NamesIn(tmp_->path()), std::set<std::string>{"f"});
}

// Staging writes chunks with O_DIRECT: the aligned prefix bypasses the page
// cache and the tail goes through it. Every shape must read back byte-exact.
// Runs with O_DIRECT and with the buffered fallback (a filesystem that
// refuses O_DIRECT).
class DirectIoTest : public FileUtilTest,
                     public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    FileUtilTest::SetUp();
    SetDirectIoForTesting(GetParam());
  }
  void TearDown() override {
    SetDirectIoForTesting(true);
    FileUtilTest::TearDown();
  }
};

INSTANTIATE_TEST_SUITE_P(DirectAndBuffered, DirectIoTest,
                         ::testing::Values(true, false), [](const auto& info) {
                           return info.param ? "direct" : "buffered";
                         });

TEST_P(DirectIoTest, WriteFileAtomicallyDirectWritesEveryShape) {
  const size_t kAlign = 4096;
  // aligned_alloc wants a multiple of the alignment (ASan checks it).
  const size_t size = (4 << 20) + 2 * kAlign;
  std::unique_ptr<uint8_t, decltype(&std::free)> buf(
      static_cast<uint8_t*>(std::aligned_alloc(kAlign, size)), &std::free);
  ASSERT_NE(buf, nullptr);
  const auto content = MakeBytes(size, 7);
  std::memcpy(buf.get(), content.data(), size);
  struct Case {
    size_t offset;  // 0: aligned start; 1: unaligned, buffered fallback
    size_t len;
  };
  const Case cases[] = {{0, (4 << 20) + 16}, {0, 4 << 20}, {0, 100}, {0, 0},
                        {0, 8192 + 1},       {1, 3 << 20}};
  int n = 0;
  for (const Case& c : cases) {
    const std::string path = P("d" + std::to_string(n++));
    std::span<const uint8_t> data(buf.get() + c.offset, c.len);
    WAVEFS_ASSERT_OK(WriteFileAtomicallyDirect(path, data, 0600));
    std::vector<uint8_t> out;
    WAVEFS_ASSERT_OK(ReadWholeFile(path, &out));
    EXPECT_EQ(out.size(), c.len) << path;
    EXPECT_TRUE(std::equal(out.begin(), out.end(), data.begin())) << path;
    EXPECT_EQ(ModeOf(path), 0600u);
  }
  // Replacing keeps the new length exactly, and no temporary file remains.
  WAVEFS_ASSERT_OK(WriteFileAtomicallyDirect(P("d0"), {buf.get(), 5000}));
  EXPECT_EQ(std::filesystem::file_size(P("d0")), 5000u);
  EXPECT_EQ(NamesIn(tmp_->path()).size(), std::size(cases));
}

// Chunk reads use O_DIRECT: aligned spans read into an aligned spot of the
// buffer, then moved. Every size and offset must come back byte-exact.
TEST_P(DirectIoTest, DirectReadsReturnExactBytes) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096},
                      size_t{4097}, size_t{(4 << 20) + 1024}}) {
    SCOPED_TRACE(size);
    const auto content = MakeBytes(size, static_cast<uint32_t>(size % 251));
    const std::string path = P("r" + std::to_string(size));
    WAVEFS_ASSERT_OK(WriteFileAtomically(path, content));
    std::vector<uint8_t> out(3, 0xee);
    WAVEFS_ASSERT_OK(ReadWholeFileDirect(path, &out));
    EXPECT_TRUE(out == content);
    if (size == 0) continue;
    for (uint64_t off :
         {uint64_t{0}, uint64_t{1}, uint64_t{size / 2}, uint64_t{size - 1}}) {
      for (size_t len : {size_t{1}, size - off}) {
        if (off + len > size) continue;
        WAVEFS_ASSERT_OK(ReadFileRange(path, off, len, &out));
        ASSERT_EQ(out.size(), len);
        EXPECT_TRUE(std::equal(out.begin(), out.end(), content.begin() + off))
            << off << "+" << len;
      }
    }
    EXPECT_EQ(ReadFileRange(path, 0, size + 1, &out).code(), Code::kCorrupt);
  }
  std::vector<uint8_t> out;
  EXPECT_EQ(ReadWholeFileDirect(P("missing"), &out).code(), Code::kNotFound);
  EXPECT_EQ(ReadFileRange(P("missing"), 0, 1, &out).code(), Code::kNotFound);
}

TEST_F(FileUtilTest, ConcurrentWritersOfOnePathAllSucceed) {
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      const std::string text(1000, static_cast<char>('a' + t));
      for (int i = 0; i < 20; ++i) {
        if (!WriteFileDurably(P("f"), AsBytes(text)).ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  const std::string content = ReadTestFile(P("f"));
  ASSERT_EQ(content.size(), 1000u);
  EXPECT_EQ(content, std::string(1000, content[0]));
  EXPECT_EQ(NamesIn(tmp_->path()), std::set<std::string>{"f"});
}

TEST_F(FileUtilTest, ReadWholeFileMissingIsNotFound) {
  std::vector<uint8_t> out;
  Status st = ReadWholeFile(P("absent"), &out);
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_NE(st.message().find(P("absent")), std::string::npos);
}

TEST_F(FileUtilTest, ReadWholeFileOfDirectoryFails) {
  std::vector<uint8_t> out;
  EXPECT_EQ(ReadWholeFile(tmp_->path(), &out).code(), Code::kIsDir);
}

TEST_F(FileUtilTest, ReadWholeFileReusesTheBuffer) {
  WriteTestFile(P("f"), "0123456789");
  std::vector<uint8_t> out;
  out.reserve(1 << 16);
  const uint8_t* data = out.data();
  WAVEFS_ASSERT_OK(ReadWholeFile(P("f"), &out));
  EXPECT_EQ(std::string(out.begin(), out.end()), "0123456789");
  EXPECT_EQ(out.data(), data);
  WriteTestFile(P("empty"), "");
  WAVEFS_ASSERT_OK(ReadWholeFile(P("empty"), &out));
  EXPECT_TRUE(out.empty());
}

TEST_F(FileUtilTest, MakeDirsCreatesParentsAndAcceptsExisting) {
  WAVEFS_ASSERT_OK(MakeDirs(P("a/b/c")));
  EXPECT_TRUE(std::filesystem::is_directory(P("a/b/c")));
  EXPECT_EQ(ModeOf(P("a/b/c")), 0700u);
  WAVEFS_ASSERT_OK(MakeDirs(P("a/b/c")));
  WAVEFS_ASSERT_OK(MakeDirs(P("a/b/c/")));
  WAVEFS_ASSERT_OK(MakeDirs(tmp_->path()));
}

TEST_F(FileUtilTest, MakeDirsThroughAFileFails) {
  WriteTestFile(P("file"), "x");
  EXPECT_EQ(MakeDirs(P("file")).code(), Code::kNotDir);
  EXPECT_EQ(MakeDirs(P("file/sub")).code(), Code::kNotDir);
}

TEST_F(FileUtilTest, FsyncPathOfFileAndDirectory) {
  WriteTestFile(P("f"), "x");
  WAVEFS_EXPECT_OK(FsyncPath(P("f")));
  WAVEFS_EXPECT_OK(FsyncPath(tmp_->path()));
  EXPECT_EQ(FsyncPath(P("absent")).code(), Code::kNotFound);
}

TEST_F(FileUtilTest, FreeBytesAndDeviceOf) {
  Result<uint64_t> free = FreeBytes(tmp_->path());
  ASSERT_TRUE(free.ok()) << free.status().ToString();
  EXPECT_GT(*free, 0u);
  EXPECT_EQ(FreeBytes(P("absent")).status().code(), Code::kNotFound);

  WAVEFS_ASSERT_OK(MakeDirs(P("sub")));
  Result<uint64_t> a = DeviceOf(tmp_->path());
  Result<uint64_t> b = DeviceOf(P("sub"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(DeviceOf(P("absent")).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace wavefs
