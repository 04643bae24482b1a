// Store faults seen through Filesystem: with the store refusing puts, a
// written file stays readable (from the spill) and the error shows in
// user.wavefs.stats; once the fault is lifted everything is uploaded and
// reads come from the store. A torn put is an error when read, never wrong
// bytes, and with verify_puts it never reaches a reader at all.
#include <map>
#include <sstream>
#include <string>

#include "fs_fixture.h"
#include "store/fault_store.h"

namespace wavefs {
namespace fs_testing {
namespace {

using Op = FaultStore::Op;

std::map<std::string, std::string> ParseStats(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

using FsFaultTest = FsTest;

TEST_F(FsFaultTest, RefusedPutsKeepTheFileReadableUntilTheStoreAnswers) {
  const auto denied = faults_->FailPuts(
      FaultStore::Permanent("403 AccessDenied"), FaultStore::kForever);
  const std::string data = RandomBytes(2 * kC + 12345, 901);
  const uint64_t ino = WriteFile("f", data);
  ASSERT_TRUE(WaitFor([&] { return faults_->fired(Op::kPut) >= 3; }, 30s));
  // A refused put is tried twice before its worker records the error, so
  // three refusals can all have happened (two workers) while the error is
  // not recorded yet: wait for the record itself.
  ASSERT_TRUE(
      WaitFor([&] { return !uploader_->stats().sticky_error.empty(); }, 30s));

  // The error is visible where `wavefs status` reads it.
  auto stats = ParseStats(fs_->StatsText(""));
  EXPECT_NE(stats["upload_error"].find("403 AccessDenied"), std::string::npos)
      << stats["upload_error"];
  EXPECT_EQ(stats["pending_chunks"], "3");
  EXPECT_EQ(stats["store_puts"], "0");
  // Every byte is still there, read from the spill.
  const uint64_t gets = store_->gets();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
  EXPECT_EQ(store_->gets(), gets) << "read from a store that has nothing";
  EXPECT_EQ(memory_->object_count(), 0u);
  // Two full chunks in the spill; the 12 KiB tail staged in the index.
  EXPECT_EQ(SpillCount(), 2u);
  EXPECT_EQ(index_->staged_body_bytes(),
            CiphertextSize(kNewestChunkFormat, 12345));

  faults_->Lift(denied);
  Drain();
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_EQ(index_->staged_body_bytes(), 0u);
  EXPECT_EQ(memory_->object_count(), 3u);
  EXPECT_TRUE(
      WaitFor([&] { return uploader_->stats().sticky_error.empty(); }, 30s));
  stats = ParseStats(fs_->StatsText(""));
  EXPECT_EQ(stats["upload_error"], "");
  EXPECT_EQ(stats["pending_chunks"], "0");

  Remount();  // a cold cache: the reads below go to the store
  const uint64_t before = store_->gets();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
  EXPECT_GE(store_->gets() - before, 3u);
}

TEST_F(FsFaultTest, TornPutReadsAsAnErrorNeverWrongBytes) {
  faults_->TearPuts(100, 1);
  const std::string data = RandomBytes(kC, 902);
  const uint64_t ino = WriteFile("f", data);
  Drain();
  ASSERT_EQ(faults_->fired(Op::kPut), 1u);
  Remount();
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  for (uint64_t offset : {uint64_t{0}, kC / 2, kC - 10}) {
    std::string buf(10, '\x7e');
    auto r = fs_->Read(h.get(), offset, buf.size(), buf.data());
    ASSERT_FALSE(r.ok()) << "read " << *r << " bytes of a torn chunk";
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().ToString();
    EXPECT_EQ(ErrnoOf(r.status()), EIO);
    EXPECT_EQ(buf, std::string(10, '\x7e')) << "bytes were handed out";
  }
  WAVEFS_EXPECT_OK(fs_->Release(std::move(h)));
}

class FsVerifiedFaultTest : public FsTest {
 protected:
  Uploader::Options UploaderOptions() override {
    Uploader::Options o = FsTest::UploaderOptions();
    o.verify_puts = true;
    return o;
  }
};

TEST_F(FsVerifiedFaultTest, TornAndCorruptPutsArePutAgain) {
  faults_->TearPuts(100, 1);
  faults_->CorruptPuts(1, /*skip=*/1);
  const std::string data = RandomBytes(3 * kC, 903);
  const uint64_t ino = WriteFile("f", data);
  Drain();
  EXPECT_EQ(faults_->fired(Op::kPut), 2u);
  EXPECT_EQ(SpillCount(), 0u);
  Remount();
  EXPECT_TRUE(SameBytes(data, ReadFile(ino)));
}

}  // namespace
}  // namespace fs_testing
}  // namespace wavefs
