#include "store/spill.h"

#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::MakeAddress;
using testing_util::MakeBytes;
using testing_util::ModeOf;
using testing_util::NamesIn;
using testing_util::PathExists;
using testing_util::TempDir;
using testing_util::WriteTestFile;

class SpillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<TempDir>();
    Reopen();
  }
  void TearDown() override {
    spill_.reset();
    tmp_.reset();
  }
  std::string dir() const { return *tmp_ / "spill"; }
  void Reopen() {
    spill_.reset();
    auto opened = Spill::Open(dir());
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    spill_ = std::move(*opened);
  }
  std::set<Address> ListAll() {
    std::set<Address> found;
    Status st = spill_->List([&](const Address& a) { found.insert(a); });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return found;
  }

  std::unique_ptr<TempDir> tmp_;
  std::unique_ptr<Spill> spill_;
};

TEST_F(SpillTest, OpenCreatesPrivateDirectory) {
  EXPECT_EQ(spill_->dir(), dir());
  EXPECT_TRUE(std::filesystem::is_directory(dir()));
  EXPECT_EQ(ModeOf(dir()), 0700u);
  auto nested = Spill::Open(*tmp_ / "x/y/spill");
  ASSERT_TRUE(nested.ok()) << nested.status().ToString();
  EXPECT_TRUE(std::filesystem::is_directory(*tmp_ / "x/y/spill"));
}

TEST_F(SpillTest, StageThenReadReturnsSameBytes) {
  const Address a = MakeAddress(1);
  const auto bytes = MakeBytes(kMaxCiphertextSize, 1);
  EXPECT_FALSE(spill_->Contains(a));
  WAVEFS_ASSERT_OK(spill_->Stage(a, bytes));
  EXPECT_TRUE(spill_->Contains(a));
  EXPECT_EQ(spill_->PathOf(a), dir() + "/" + ToHex(a));
  EXPECT_EQ(ModeOf(spill_->PathOf(a)), 0600u);
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(spill_->Read(a, &out));
  EXPECT_TRUE(out == bytes);
  EXPECT_EQ(NamesIn(dir()), std::set<std::string>{ToHex(a)});
}

TEST_F(SpillTest, StageOfStagedAddressIsOk) {
  const Address a = MakeAddress(2);
  const auto bytes = MakeBytes(100, 2);
  WAVEFS_ASSERT_OK(spill_->Stage(a, bytes));
  WAVEFS_ASSERT_OK(spill_->Stage(a, bytes));
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(spill_->Read(a, &out));
  EXPECT_EQ(out, bytes);
  EXPECT_EQ(ListAll(), std::set<Address>{a});
}

TEST_F(SpillTest, SyncMakesStagedFileDurable) {
  const Address a = MakeAddress(3);
  WAVEFS_ASSERT_OK(spill_->Stage(a, MakeBytes(10, 3)));
  WAVEFS_EXPECT_OK(spill_->Sync(a));
  EXPECT_EQ(spill_->Sync(MakeAddress(4)).code(), Code::kNotFound);
}

// Counts fsyncs; everything else goes to the POSIX Env.
class CountingEnv : public Env {
 public:
  Status CreateFile(const std::string& path, std::span<const uint8_t> data,
                    unsigned mode, bool direct) override {
    return Env::Default()->CreateFile(path, data, mode, direct);
  }
  Status SyncPath(const std::string& path) override {
    syncs += 1;
    return Env::Default()->SyncPath(path);
  }
  Status SyncFs(const std::string& path) override {
    return Env::Default()->SyncFs(path);
  }
  Status Rename(const std::string& from, const std::string& to) override {
    return Env::Default()->Rename(from, to);
  }
  Status Unlink(const std::string& path) override {
    return Env::Default()->Unlink(path);
  }
  Status MakeDir(const std::string& path, unsigned mode) override {
    return Env::Default()->MakeDir(path, mode);
  }
  int syncs = 0;
};

TEST_F(SpillTest, SyncOfAFileAlreadySyncedCostsNoFsync) {
  // A database's every fsync names the same staged chunks: only the first
  // Sync of each may cost fsyncs; a file staged anew must be synced anew.
  CountingEnv env;
  auto opened = Spill::Open(*tmp_ / "counted", &env);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  Spill& spill = **opened;
  const Address a = MakeAddress(30);
  WAVEFS_ASSERT_OK(spill.Stage(a, MakeBytes(10, 30)));
  WAVEFS_ASSERT_OK(spill.Sync(a));
  EXPECT_EQ(env.syncs, 2);  // the file, then its name
  WAVEFS_ASSERT_OK(spill.Sync(a));
  WAVEFS_ASSERT_OK(spill.Stage(a, MakeBytes(10, 30)));  // already there
  WAVEFS_ASSERT_OK(spill.Sync(a));
  EXPECT_EQ(env.syncs, 2);
  WAVEFS_ASSERT_OK(spill.Remove(a));
  EXPECT_EQ(spill.Sync(a).code(), Code::kNotFound);
  WAVEFS_ASSERT_OK(spill.Stage(a, MakeBytes(10, 30)));
  const int before = env.syncs;
  WAVEFS_ASSERT_OK(spill.Sync(a));
  EXPECT_EQ(env.syncs, before + 2);
  // Moved out without a Remove (the local store renames staged files in):
  // not staged any more, whatever was synced before.
  std::filesystem::rename(spill.PathOf(a), *tmp_ / "moved");
  EXPECT_EQ(spill.Sync(a).code(), Code::kNotFound);
  EXPECT_EQ(env.syncs, before + 2);
}

TEST_F(SpillTest, ReadMissingIsNotFound) {
  std::vector<uint8_t> out;
  EXPECT_EQ(spill_->Read(MakeAddress(5), &out).code(), Code::kNotFound);
}

TEST_F(SpillTest, RemoveDeletesAndMissingIsOk) {
  const Address a = MakeAddress(6);
  WAVEFS_ASSERT_OK(spill_->Stage(a, MakeBytes(10, 6)));
  WAVEFS_ASSERT_OK(spill_->Remove(a));
  EXPECT_FALSE(spill_->Contains(a));
  EXPECT_FALSE(PathExists(spill_->PathOf(a)));
  WAVEFS_EXPECT_OK(spill_->Remove(a));
  std::vector<uint8_t> out;
  EXPECT_EQ(spill_->Read(a, &out).code(), Code::kNotFound);
}

TEST_F(SpillTest, ListReturnsOnlyStagedAddresses) {
  std::set<Address> expected;
  for (uint32_t seed = 10; seed < 60; ++seed) {
    WAVEFS_ASSERT_OK(spill_->Stage(MakeAddress(seed), MakeBytes(20, seed)));
    expected.insert(MakeAddress(seed));
  }
  const std::string hex = ToHex(MakeAddress(99));
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  WriteTestFile(dir() + "/notes.txt", "junk");
  WriteTestFile(dir() + "/" + hex.substr(1), "63 chars");
  WriteTestFile(dir() + "/" + hex + "x", "65 chars");
  WriteTestFile(dir() + "/" + upper, "upper case");
  WriteTestFile(dir() + "/" + std::string(64, 'g'), "not hex");
  WriteTestFile(dir() + "/.tmp.1.2." + hex, "in flight");
  EXPECT_EQ(ListAll(), expected);
}

TEST_F(SpillTest, ListCallbackMayRemove) {
  for (uint32_t seed = 0; seed < 10; ++seed) {
    WAVEFS_ASSERT_OK(spill_->Stage(MakeAddress(seed), MakeBytes(8, seed)));
  }
  WAVEFS_ASSERT_OK(spill_->List(
      [&](const Address& a) { EXPECT_TRUE(spill_->Remove(a).ok()); }));
  EXPECT_TRUE(ListAll().empty());
}

TEST_F(SpillTest, OpenRemovesLeftoverTemporaryFilesOnly) {
  const Address a = MakeAddress(7);
  WAVEFS_ASSERT_OK(spill_->Stage(a, MakeBytes(10, 7)));
  const std::string hex = ToHex(MakeAddress(8));
  WriteTestFile(dir() + "/.tmp.4242.0." + hex, "killed mid-stage");
  WriteTestFile(dir() + "/.tmp", "bare");
  WriteTestFile(dir() + "/notes.txt", "not ours to delete");
  Reopen();
  EXPECT_EQ(NamesIn(dir()), (std::set<std::string>{ToHex(a), "notes.txt"}));
  EXPECT_EQ(ListAll(), std::set<Address>{a});
  std::vector<uint8_t> out;
  WAVEFS_ASSERT_OK(spill_->Read(a, &out));
  EXPECT_EQ(out, MakeBytes(10, 7));
}

TEST_F(SpillTest, FreeBytesIsPositive) {
  Result<uint64_t> free = spill_->FreeBytes();
  ASSERT_TRUE(free.ok()) << free.status().ToString();
  EXPECT_GT(*free, 0u);
}

}  // namespace
}  // namespace wavefs
