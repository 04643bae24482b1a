#include "store/store_config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>

#include "store_test_util.h"

namespace wavefs {
namespace {

using testing_util::ModeOf;
using testing_util::PathExists;
using testing_util::ReadTestFile;
using testing_util::TempDir;
using testing_util::WriteTestFile;

bool IsLowerHex(const std::string& s) {
  return s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

class StoreConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { tmp_ = std::make_unique<TempDir>(); }
  void TearDown() override { tmp_.reset(); }
  std::string P(const std::string& name) const { return *tmp_ / name; }
  // A store dir holding a config with the given text.
  std::string StoreWith(const std::string& text) {
    const std::string dir = P("store");
    std::filesystem::create_directories(dir);
    WriteTestFile(dir + "/" + kStoreConfigName, text);
    return dir;
  }

  std::unique_ptr<TempDir> tmp_;
};

TEST_F(StoreConfigTest, InitThenRead) {
  const std::string dir = P("new/store");
  Result<StoreConfig> made = InitStoreDir(dir);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  EXPECT_EQ(made->format_version, 4);
  EXPECT_EQ(made->chunk_format(), ChunkFormat::kTagAddressed);
  EXPECT_EQ(made->chunk_size, 4194304u);
  EXPECT_EQ(made->store_id.size(), 32u);
  EXPECT_TRUE(IsLowerHex(made->store_id));
  EXPECT_TRUE(std::filesystem::is_directory(dir + "/chunks"));
  EXPECT_EQ(ReadTestFile(dir + "/wavefs-store.conf"),
            "format=4\nchunk_size=4194304\nstore_id=" + made->store_id + "\n");

  Result<StoreConfig> read = ReadStoreConfig(dir);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->format_version, 4);
  EXPECT_EQ(read->chunk_size, kChunkSize);
  EXPECT_EQ(read->store_id, made->store_id);
}

TEST_F(StoreConfigTest, InitMakesAnotherFormatWhenAsked) {
  for (int format : {1, 2, 4}) {
    const std::string dir = P("f" + std::to_string(format));
    Result<StoreConfig> made = InitStoreDir(dir, format);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    EXPECT_EQ(made->chunk_format(), static_cast<ChunkFormat>(format));
    Result<StoreConfig> read = ReadStoreConfig(dir);
    ASSERT_TRUE(read.ok()) << read.status().ToString();
    EXPECT_EQ(read->format_version, format);
  }
  for (int format : {0, 5}) {
    const std::string dir = P("bad" + std::to_string(format));
    Result<StoreConfig> made = InitStoreDir(dir, format);
    EXPECT_EQ(made.status().code(), Code::kInvalid);
    EXPECT_EQ(made.status().message(), "store format " +
                                           std::to_string(format) +
                                           " does not exist (formats 1 to 4)");
    EXPECT_FALSE(std::filesystem::exists(dir));
  }
}

TEST_F(StoreConfigTest, EachStoreGetsItsOwnId) {
  Result<StoreConfig> a = InitStoreDir(P("a"));
  Result<StoreConfig> b = InitStoreDir(P("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->store_id, b->store_id);
}

TEST_F(StoreConfigTest, InitOfExistingStoreIsExists) {
  Result<StoreConfig> first = InitStoreDir(P("s"));
  ASSERT_TRUE(first.ok());
  const std::string before = ReadTestFile(P("s/wavefs-store.conf"));
  Result<StoreConfig> second = InitStoreDir(P("s"));
  EXPECT_EQ(second.status().code(), Code::kExists);
  EXPECT_NE(second.status().message().find("already a wavefs store"),
            std::string::npos);
  EXPECT_EQ(ReadTestFile(P("s/wavefs-store.conf")), before);
}

TEST_F(StoreConfigTest, InitOfNonEmptyDirectoryWithoutConfigWorks) {
  WriteTestFile(P("other"), "x");
  Result<StoreConfig> made = InitStoreDir(tmp_->path());
  ASSERT_TRUE(made.ok()) << made.status().ToString();
}

TEST_F(StoreConfigTest, ReadOfPlainDirectoryIsNotFound) {
  Result<StoreConfig> read = ReadStoreConfig(tmp_->path());
  EXPECT_EQ(read.status().code(), Code::kNotFound);
  EXPECT_EQ(read.status().message(),
            tmp_->path() +
                " is not a wavefs store (no wavefs-store.conf; run 'wavefs "
                "init')");
}

TEST_F(StoreConfigTest, NewerFormatIsNotSupported) {
  Result<StoreConfig> read =
      ReadStoreConfig(StoreWith("format=5\nsomething_new=yes\n"));
  EXPECT_EQ(read.status().code(), Code::kNotSupported);
  EXPECT_EQ(read.status().message(),
            "store format 5 is newer than this wavefs supports (4)");
  read = ReadStoreConfig(StoreWith("format=0\n"));
  EXPECT_EQ(read.status().code(), Code::kNotSupported);
  EXPECT_EQ(read.status().message(), "store format 0 is not supported");
}

// Stores made before format 2 keep working, in their own format.
TEST_F(StoreConfigTest, Format1StoreIsStillRead) {
  Result<StoreConfig> read =
      ReadStoreConfig(StoreWith("format=1\nchunk_size=4194304\nstore_id="
                                "0123456789abcdef0123456789abcdef\n"));
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->format_version, 1);
  EXPECT_EQ(read->chunk_format(), ChunkFormat::kWhole);
}

TEST_F(StoreConfigTest, OtherChunkSizeIsNotSupported) {
  Result<StoreConfig> read =
      ReadStoreConfig(StoreWith("format=1\nchunk_size=1048576\nstore_id="
                                "0123456789abcdef0123456789abcdef\n"));
  EXPECT_EQ(read.status().code(), Code::kNotSupported);
}

TEST_F(StoreConfigTest, UnknownKeysCommentsAndSpacesAreAccepted) {
  Result<StoreConfig> read = ReadStoreConfig(
      StoreWith("# a comment\n\nformat = 1\r\nchunk_size=4194304\nlater_key=1\n"
                "store_id=0123456789abcdef0123456789abcdef"));
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->store_id, "0123456789abcdef0123456789abcdef");
}

TEST_F(StoreConfigTest, GarbledConfigIsCorrupt) {
  const char* cases[] = {
      "",
      "hello\n",
      "chunk_size=4194304\n",                                   // no format
      "format=one\nchunk_size=4194304\n",                       // bad number
      "format=1x\nchunk_size=4194304\n",                        // trailing junk
      "format=1\nstore_id=0123456789abcdef0123456789abcdef\n",  // no size
      "format=1\nchunk_size=-4\n",
      "format=1\nchunk_size=4194304\n",                // no store_id
      "format=1\nchunk_size=4194304\nstore_id=xyz\n",  // bad store_id
      "format=1\nformat=1\nchunk_size=4194304\n",      // duplicate
  };
  for (const char* text : cases) {
    Result<StoreConfig> read = ReadStoreConfig(StoreWith(text));
    EXPECT_EQ(read.status().code(), Code::kCorrupt)
        << "config: " << text << " -> " << read.status().ToString();
  }
}

// ---- key files ----

class KeyFileTest : public StoreConfigTest {};

TEST_F(KeyFileTest, CreateThenRead) {
  const std::string path = P("keys/dir/store.key");
  WAVEFS_ASSERT_OK(CreateKeyFile(path));
  EXPECT_EQ(ModeOf(path), 0600u);
  const std::string text = ReadTestFile(path);
  ASSERT_EQ(text.size(), 65u);
  EXPECT_EQ(text.back(), '\n');
  EXPECT_TRUE(IsLowerHex(text.substr(0, 64)));

  Result<Secret> secret = ReadKeyFile(path);
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  EXPECT_EQ(ToHex(*secret), text.substr(0, 64));
}

TEST_F(KeyFileTest, EachKeyIsFresh) {
  WAVEFS_ASSERT_OK(CreateKeyFile(P("a.key")));
  WAVEFS_ASSERT_OK(CreateKeyFile(P("b.key")));
  EXPECT_NE(ReadTestFile(P("a.key")), ReadTestFile(P("b.key")));
}

TEST_F(KeyFileTest, ExistingKeyIsNeverOverwritten) {
  WAVEFS_ASSERT_OK(CreateKeyFile(P("k")));
  const std::string before = ReadTestFile(P("k"));
  EXPECT_EQ(CreateKeyFile(P("k")).code(), Code::kExists);
  EXPECT_EQ(ReadTestFile(P("k")), before);
  // Not even a file that is not a valid key.
  WriteTestFile(P("other"), "something else", 0600);
  EXPECT_EQ(CreateKeyFile(P("other")).code(), Code::kExists);
  EXPECT_EQ(ReadTestFile(P("other")), "something else");
}

TEST_F(KeyFileTest, MissingKeyIsNotFound) {
  Result<Secret> secret = ReadKeyFile(P("absent.key"));
  EXPECT_EQ(secret.status().code(), Code::kNotFound);
  EXPECT_EQ(secret.status().message(),
            "key file " + P("absent.key") + " not found");
}

TEST_F(KeyFileTest, KeyReadableByOthersIsRejected) {
  WAVEFS_ASSERT_OK(CreateKeyFile(P("k")));
  const std::string hex = ReadTestFile(P("k")).substr(0, 64);
  ASSERT_EQ(::chmod(P("k").c_str(), 0644), 0);
  Result<Secret> secret = ReadKeyFile(P("k"));
  EXPECT_EQ(secret.status().code(), Code::kPermission);
  EXPECT_EQ(secret.status().message(),
            "key file " + P("k") +
                " is readable by others (mode 0644); chmod 600 it");
  EXPECT_EQ(secret.status().ToString().find(hex), std::string::npos);

  ASSERT_EQ(::chmod(P("k").c_str(), 0640), 0);
  EXPECT_EQ(ReadKeyFile(P("k")).status().code(), Code::kPermission);
  ASSERT_EQ(::chmod(P("k").c_str(), 0400), 0);
  EXPECT_TRUE(ReadKeyFile(P("k")).ok());
}

TEST_F(KeyFileTest, SymlinkedKeyIsRefused) {
  WAVEFS_ASSERT_OK(CreateKeyFile(P("real")));
  ASSERT_EQ(::symlink(P("real").c_str(), P("link").c_str()), 0);
  Result<Secret> secret = ReadKeyFile(P("link"));
  EXPECT_EQ(secret.status().code(), Code::kPermission);
  EXPECT_NE(secret.status().message().find("symbolic link"), std::string::npos)
      << secret.status().message();
  EXPECT_TRUE(ReadKeyFile(P("real")).ok());
}

TEST_F(KeyFileTest, KeyOwnedBySomeoneElseIsRefused) {
  WAVEFS_ASSERT_OK(CreateKeyFile(P("k")));
  ASSERT_EQ(::chown(P("k").c_str(), ::geteuid() + 4242, -1), 0)
      << "run as root (CI does)";
  Result<Secret> secret = ReadKeyFile(P("k"));
  EXPECT_EQ(secret.status().code(), Code::kPermission);
  EXPECT_NE(secret.status().message().find("belongs to uid"), std::string::npos)
      << secret.status().message();
}

TEST_F(KeyFileTest, TrailingWhitespaceIsAccepted) {
  const std::string hex(64, 'a');
  WriteTestFile(P("k"), hex + "\r\n\n  \t", 0600);
  Result<Secret> secret = ReadKeyFile(P("k"));
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  Secret expected;
  expected.fill(0xaa);
  EXPECT_EQ(*secret, expected);
}

TEST_F(KeyFileTest, GarbledKeyIsCorruptAndNotQuoted) {
  const std::string hex = "0123456789abcdef0123456789abcdef0123456789abcdef";
  const std::string cases[] = {
      "",
      hex + "0123456789abcde\n",         // 63 chars
      hex + "0123456789abcdef0\n",       // 65 chars
      hex + "0123456789abcdeg\n",        // not hex
      hex + "01234567 89abcdef\n",       // space inside
      hex + "0123456789abcdef\nmore\n",  // trailing junk
  };
  for (const std::string& text : cases) {
    WriteTestFile(P("k"), text, 0600);
    Result<Secret> secret = ReadKeyFile(P("k"));
    EXPECT_EQ(secret.status().code(), Code::kCorrupt)
        << "key text: " << text << " -> " << secret.status().ToString();
    EXPECT_EQ(secret.status().message().find(hex), std::string::npos);
  }
}

TEST_F(KeyFileTest, DirectoryIsNotAKeyFile) {
  std::filesystem::create_directories(P("d"));
  ASSERT_EQ(::chmod(P("d").c_str(), 0700), 0);
  EXPECT_EQ(ReadKeyFile(P("d")).status().code(), Code::kCorrupt);
  EXPECT_TRUE(PathExists(P("d")));
}

}  // namespace
}  // namespace wavefs
