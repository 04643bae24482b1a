#include "fs/kernel_readahead.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace wavefs {
namespace {

namespace stdfs = std::filesystem;

std::string DevId(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return std::to_string(major(st.st_dev)) + ":" +
         std::to_string(minor(st.st_dev));
}

class KernelReadaheadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = stdfs::temp_directory_path() /
           ("wavefs-ra-test-" + std::to_string(::getpid()));
    stdfs::remove_all(dir_);
    stdfs::create_directories(dir_);
  }
  void TearDown() override { stdfs::remove_all(dir_); }
  stdfs::path dir_;
};

// /proc is a mount point on every machine this runs on, a chroot included
// (where "/" may not be one).
TEST_F(KernelReadaheadTest, FindsTheDeviceOfAMountPoint) {
  auto id = MountDeviceId("/proc");
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, DevId("/proc"));
}

TEST_F(KernelReadaheadTest, APlainDirectoryIsNoMountPoint) {
  auto id = MountDeviceId(dir_.string());
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), Code::kNotFound);
}

TEST_F(KernelReadaheadTest, WritesTheMountsBdiReadahead) {
  const stdfs::path bdi = dir_ / "class" / "bdi" / DevId("/proc");
  stdfs::create_directories(bdi);
  std::ofstream(bdi / "read_ahead_kb") << "128\n";
  auto now = SetKernelReadahead("/proc", 1024, dir_.string());
  ASSERT_TRUE(now.ok()) << now.status().ToString();
  EXPECT_EQ(*now, 1024u);
  std::ifstream in(bdi / "read_ahead_kb");
  uint32_t v = 0;
  in >> v;
  EXPECT_EQ(v, 1024u);
}

TEST_F(KernelReadaheadTest, AMissingBdiIsAnErrorNotACrash) {
  auto now = SetKernelReadahead("/proc", 1024, dir_.string());
  EXPECT_FALSE(now.ok());
  now = SetKernelReadahead(dir_.string(), 1024, dir_.string());
  EXPECT_FALSE(now.ok());
}

TEST_F(KernelReadaheadTest, RelaxesTheMountsDirtyLimit) {
  const stdfs::path bdi = dir_ / "class" / "bdi" / DevId("/proc");
  stdfs::create_directories(bdi);
  std::ofstream(bdi / "max_ratio") << "1\n";
  std::ofstream(bdi / "strict_limit") << "1\n";
  Status st = RelaxDirtyLimit("/proc", 50, dir_.string());
  ASSERT_TRUE(st.ok()) << st.ToString();
  uint32_t ratio = 0, strict = 1;
  std::ifstream(bdi / "max_ratio") >> ratio;
  std::ifstream(bdi / "strict_limit") >> strict;
  EXPECT_EQ(ratio, 50u);
  EXPECT_EQ(strict, 0u);
  // A kernel without a writable strict_limit (before 6.2): an error.
  stdfs::remove(bdi / "strict_limit");
  stdfs::create_directory(bdi / "strict_limit");
  EXPECT_FALSE(RelaxDirtyLimit("/proc", 50, dir_.string()).ok());
}

}  // namespace
}  // namespace wavefs
