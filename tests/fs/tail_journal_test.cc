// The tail journal (fs/tail_journal.h): a file closed again soon after a
// commit (a log appended to by separate opens) commits its writes as
// encrypted index records instead of sealing its last chunk at each close;
// a kill loses none of them, and a sealed commit takes their place.
#include "fs/tail_journal.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "fs/committer.h"
#include "fs_fixture.h"

namespace wavefs {
namespace fs_testing {
namespace {

using namespace std::chrono_literals;

class TailJournalTest : public FsTest {
 protected:
  // Journals that outlast any test: only a sealed commit ends them.
  static FsOptions LongHold() {
    FsOptions o = TestOptions();
    o.hot_tail_hold = std::chrono::hours(1);
    return o;
  }
  void SetUp() override {
    FsTest::SetUp();
    Remount(LongHold());
  }
  // Appends line through an open of its own, as `echo >> log` does.
  void Append(uint64_t ino, std::string* log, const std::string& line) {
    auto h = OpenH(ino);
    ASSERT_TRUE(h);
    WriteAt(h.get(), log->size(), line);
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
    *log += line;
  }
  bool Journaled(uint64_t ino) {
    auto inos = index_->JournaledInodes();
    EXPECT_TRUE(inos.ok());
    return inos.ok() &&
           std::find(inos->begin(), inos->end(), ino) != inos->end();
  }
  // Whether any file under dir holds marker.
  static bool AnyFileHolds(const std::filesystem::path& dir,
                           const std::string& marker) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
      if (!e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(in)),
                              std::istreambuf_iterator<char>());
      if (bytes.find(marker) != std::string::npos) return true;
    }
    return false;
  }
};

TEST_F(TailJournalTest, AppendsAreJournaledAndSurviveAKill) {
  std::string log = "first line, sealed at its close\n";
  const uint64_t ino = WriteFile("log", log);
  Drain();
  const uint64_t puts = store_->puts();
  for (int i = 0; i < 50; ++i)
    Append(ino, &log, "line " + std::to_string(i) + " zq-journal-marker\n");
  EXPECT_EQ(Stat("journal_commits"), 50u);
  EXPECT_EQ(Stat("hot_files"), 1u);
  EXPECT_TRUE(Journaled(ino));
  Drain();
  EXPECT_EQ(store_->puts(), puts) << "an append sealed and uploaded its tail";
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  EXPECT_EQ(SizeOf(ino), log.size());
  // Records are ciphertext: the marker is in no file of the index (its
  // log holds the records now) nor of the spill.
  EXPECT_FALSE(AnyFileHolds(*tmp_ / "index", "zq-journal-marker"));
  EXPECT_FALSE(AnyFileHolds(*tmp_ / "spill", "zq-journal-marker"));

  KillAndMount(LongHold());
  EXPECT_EQ(Stat("journal_replays"), 1u);
  EXPECT_EQ(SizeOf(ino), log.size());
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  // Appending goes on where it stopped.
  Append(ino, &log, "after the kill\n");
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));

  // Unmount seals: the records go, the store has the file.
  Remount(LongHold());
  EXPECT_FALSE(Journaled(ino));
  EXPECT_EQ(Stat("journal_replays"), 0u);
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  KillAndMount(LongHold());
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

// The daemon comes back while the store is unreachable, and the log's
// last sealed chunk is only in the store: its records cannot be applied
// yet. They stay (a sealed commit would delete them), writes and closes
// of the log fail meanwhile instead of landing on the version under
// them, and once the store answers the journal's thread applies them.
TEST_F(TailJournalTest, AReplayThatCannotFetchItsChunkKeepsTheRecords) {
  std::string log = "first line, sealed at its close\n";
  const uint64_t ino = WriteFile("log", log);
  Drain();  // its chunk leaves the spill: it is in the store only
  for (int i = 0; i < 5; ++i)
    Append(ino, &log, "line " + std::to_string(i) + "\n");
  ASSERT_TRUE(Journaled(ino));
  const auto unreachable = faults_->FailGets(
      Status::Error(Code::kIo, "injected: store unreachable", EIO),
      FaultStore::kForever);
  KillAndMount(LongHold());
  EXPECT_EQ(Stat("journal_replays"), 0u);
  EXPECT_TRUE(Journaled(ino));
  {
    auto h = OpenH(ino);
    ASSERT_TRUE(h);
    auto n = fs_->Write(h.get(), log.size(), "lost?\n", 6);
    ASSERT_FALSE(n.ok());
    EXPECT_EQ(ErrnoOf(n.status()), EIO);
    EXPECT_FALSE(fs_->Flush(h.get()).ok());
    fs_->Release(std::move(h)).IgnoreError();
  }
  EXPECT_TRUE(Journaled(ino)) << "a failed replay lost the records";
  faults_->Lift(unreachable);
  ASSERT_TRUE(WaitFor([&] { return Stat("journal_replays") == 1; }, 30s));
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  Append(ino, &log, "after the store came back\n");
  Remount(LongHold());
  EXPECT_FALSE(Journaled(ino));
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

// The hold is measured on a test clock (FsHooks::hold_now) that stands
// still while the appends run and then jumps past it: however slow the
// machine, every append is journaled and the hold ends with exactly one
// sealed commit (this test used real time and could see a stall of more
// than the hold between two appends as its end).
TEST_F(TailJournalTest, TheHoldEndsWithOneSealedCommit) {
  std::atomic<int64_t> clock_ms{0};
  FsOptions o = TestOptions();
  o.hot_tail_hold = 300ms;
  o.hooks.hold_now = [&] {
    return std::chrono::steady_clock::time_point(
        std::chrono::milliseconds(clock_ms.load()));
  };
  Remount(o);
  std::string log = RandomBytes(3 * kC + 12345, 501);  // a tail of 12345
  const uint64_t ino = WriteFile("log", log);
  Drain();
  const uint64_t puts = store_->puts();
  for (int i = 0; i < 5; ++i) Append(ino, &log, RandomBytes(100 + i, 510 + i));
  EXPECT_EQ(Stat("journal_commits"), 5u);
  EXPECT_TRUE(Journaled(ino));
  // Still within the hold: real time passing (more than the hold) does
  // not end it.
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(Stat("hot_files"), 1u);
  clock_ms += 299;
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(Stat("hot_files"), 1u) << "cooled before its hold was over";
  Drain();
  EXPECT_EQ(store_->puts(), puts) << "an append was sealed";
  // The hold is over: the journal's thread seals the tail once and lets
  // the file go.
  clock_ms += 1;
  ASSERT_TRUE(WaitFor([&] { return !Journaled(ino); }, 30s));
  ASSERT_TRUE(WaitFor([&] { return Stat("hot_files") == 0; }, 30s));
  Drain();
  EXPECT_EQ(store_->puts() - puts, 1u) << "not one sealed commit";
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  KillAndMount(o);
  EXPECT_EQ(Stat("journal_replays"), 0u);
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

TEST_F(TailJournalTest, BigTailsAreNotSealedPerAppend) {
  // The case that was 100x slower than gocryptfs: a 3 MB log.
  std::string log = RandomBytes(3'000'000, 520);
  const uint64_t ino = WriteFile("log", log);
  Drain();
  const uint64_t puts = store_->puts();
  const uint64_t gets = store_->gets();
  for (int i = 0; i < 30; ++i) Append(ino, &log, "a line of the log\n");
  Drain();
  EXPECT_EQ(store_->puts(), puts);
  EXPECT_LE(store_->gets() - gets, 1u) << "each append fetched the tail";
  EXPECT_EQ(Stat("journal_bytes"), 30u * 18u);
  KillAndMount(LongHold());
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

TEST_F(TailJournalTest, ChangesOtherThanWritesSealFirst) {
  std::string log = "start\n";
  const uint64_t ino = WriteFile("log", log);
  Append(ino, &log, "one\n");
  Append(ino, &log, "two\n");
  ASSERT_TRUE(Journaled(ino));
  AttrChange chmod;
  chmod.mode = 0600;
  ASSERT_TRUE(fs_->SetAttr(ino, chmod).ok());
  EXPECT_FALSE(Journaled(ino)) << "a chmod commit left the records";
  Append(ino, &log, "three\n");
  EXPECT_TRUE(Journaled(ino));
  WAVEFS_ASSERT_OK(Truncate(ino, 8));
  log.resize(8);
  EXPECT_FALSE(Journaled(ino));
  Append(ino, &log, "four\n");
  // A hole punched after journaled appends seals at the next close.
  {
    auto h = OpenH(ino);
    ASSERT_TRUE(h);
    WAVEFS_ASSERT_OK(
        fs_->Fallocate(h.get(), kFallocPunchHole | kFallocKeepSize, 2, 3));
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
    log.replace(2, 3, std::string(3, '\0'));
  }
  EXPECT_FALSE(Journaled(ino));
  Append(ino, &log, "five\n");
  EXPECT_TRUE(Journaled(ino));
  // An fsync of writes only journals too (durably:
  // FsyncsOfALogAreJournaled); a chmod through the open handle seals.
  {
    auto h = OpenH(ino);
    ASSERT_TRUE(h);
    WriteAt(h.get(), log.size(), "six\n");
    log += "six\n";
    WAVEFS_ASSERT_OK(fs_->Fsync(h.get()));
    EXPECT_TRUE(Journaled(ino));
    AttrChange chmod2;
    chmod2.mode = 0640;
    ASSERT_TRUE(fs_->SetAttr(ino, chmod2).ok());
    EXPECT_FALSE(Journaled(ino));
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  }
  KillAndMount(LongHold());
  EXPECT_EQ(fs_->GetAttr(ino)->mode & 07777, 0640u);
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

// A program that keeps its file open and fsyncs after each append (a
// database's write-ahead log, SQLite's -wal) gets the same journal: the
// first fsync seals, the next ones commit their bytes as records in a
// synced index write, with no seal, no stage and no upload each.
TEST_F(TailJournalTest, FsyncsOfALogAreJournaled) {
  std::string log = RandomBytes(200000, 560);  // a spill-staged tail
  const uint64_t ino = WriteFile("wal", log);
  Drain();
  const uint64_t puts = store_->puts();
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  for (int i = 0; i < 20; ++i) {
    const std::string frame = RandomBytes(4096 + 24, 561 + i);
    WriteAt(h.get(), log.size(), frame);
    log += frame;
    WAVEFS_ASSERT_OK(fs_->Fsync(h.get()));
  }
  EXPECT_GE(Stat("journal_commits"), 19u);
  EXPECT_TRUE(Journaled(ino));
  // An fsync with nothing new is a sync of what the journal holds.
  WAVEFS_ASSERT_OK(fs_->Fsync(h.get()));
  Drain();
  EXPECT_LE(store_->puts() - puts, 1u) << "each fsync sealed the tail";
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  // The handle is still open when the daemon dies: every fsynced byte
  // comes back.
  h.reset();
  KillAndMount(LongHold());
  EXPECT_EQ(SizeOf(ino), log.size());
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  Remount(LongHold());
  EXPECT_FALSE(Journaled(ino));
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

// With the writeback cache the kernel owns mtime and sends it as a
// setattr of times before each fsync (and close): a database's
// write-ahead log under it journals the same, the times with it, instead
// of sealing its tail at every transaction. A touch of a hot file with
// nothing new written is a record of no bytes: kill-safe like the rest.
TEST_F(TailJournalTest, TheKernelsTimesBeforeAnFsyncAreJournaled) {
  std::string log = RandomBytes(200000, 590);
  const uint64_t ino = WriteFile("wal", log);
  Drain();
  const uint64_t puts = store_->puts();
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  timespec last{};
  for (int i = 0; i < 20; ++i) {
    const std::string frame = RandomBytes(4096 + 24, 591 + i);
    WriteAt(h.get(), log.size(), frame);
    log += frame;
    AttrChange times;
    last = timespec{1700000000 + i, 1000 * i};
    times.mtime = last;
    ASSERT_TRUE(fs_->SetAttr(ino, times).ok());
    WAVEFS_ASSERT_OK(fs_->Fsync(h.get()));
  }
  EXPECT_GE(Stat("journal_commits"), 19u);
  EXPECT_TRUE(Journaled(ino));
  Drain();
  EXPECT_LE(store_->puts() - puts, 1u) << "each setattr sealed the tail";
  // touch -d of the hot file, nothing written: a record of its own.
  const uint64_t commits = Stat("journal_commits");
  AttrChange touch;
  touch.atime = timespec{1600000000, 5};
  touch.mtime = timespec{1600000001, 7};
  ASSERT_TRUE(fs_->SetAttr(ino, touch).ok());
  EXPECT_EQ(Stat("journal_commits"), commits + 1);
  EXPECT_EQ(fs_->GetAttr(ino)->mtime.tv_sec, 1600000001);
  h.reset();
  KillAndMount(LongHold());
  EXPECT_EQ(Stat("journal_replays"), 1u);
  auto a = fs_->GetAttr(ino);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->size, log.size());
  EXPECT_EQ(a->mtime.tv_sec, 1600000001);
  EXPECT_EQ(a->mtime.tv_nsec, 7);
  EXPECT_EQ(a->atime.tv_sec, 1600000000);
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  // A chmod still seals, and the times stay what they were.
  AttrChange chmod;
  chmod.mode = 0600;
  ASSERT_TRUE(fs_->SetAttr(ino, chmod).ok());
  EXPECT_FALSE(Journaled(ino));
  KillAndMount(LongHold());
  a = fs_->GetAttr(ino);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->mtime.tv_sec, 1600000001);
  EXPECT_EQ(a->mode & 07777, 0600u);
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

// A file rewritten in place and fsynced (a database's write-ahead log)
// journals up to Committer::kMaxJournalBytes; the fsync that would go past
// seals the chunk instead, once, and the next ones journal again.
TEST_F(TailJournalTest, AJournalIsBoundedAndThenSealsOnce) {
  constexpr uint64_t kFrame = 64 << 10;
  constexpr uint64_t kFits = Committer::kMaxJournalBytes / kFrame;
  std::string wal = RandomBytes(2 << 20, 580);
  const uint64_t ino = WriteFile("wal", wal);
  Drain();
  const uint64_t puts = store_->puts();
  const uint64_t commits = Stat("journal_commits");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  auto frame = [&](uint64_t i) {
    // Around the first MiB, as a log that starts over after a checkpoint.
    const uint64_t at = (i * kFrame) % (1 << 20);
    const std::string bytes = RandomBytes(kFrame, 600 + i);
    WriteAt(h.get(), at, bytes);
    wal.replace(at, kFrame, bytes);
    WAVEFS_ASSERT_OK(fs_->Fsync(h.get()));
  };
  for (uint64_t i = 0; i < kFits; ++i) frame(i);
  EXPECT_EQ(Stat("journal_commits") - commits, kFits);
  EXPECT_TRUE(Journaled(ino));
  Drain();
  EXPECT_EQ(store_->puts(), puts) << "an fsync within the bound sealed";
  frame(kFits);  // one frame past the bound
  EXPECT_EQ(Stat("journal_commits") - commits, kFits);
  EXPECT_FALSE(Journaled(ino)) << "the journal went past its bound";
  Drain();
  EXPECT_EQ(store_->puts(), puts + 1);
  frame(kFits + 1);
  EXPECT_EQ(Stat("journal_commits") - commits, kFits + 1);
  EXPECT_TRUE(Journaled(ino));
  EXPECT_TRUE(SameBytes(wal, ReadFile(ino)));
  h.reset();
  KillAndMount(LongHold());
  EXPECT_TRUE(SameBytes(wal, ReadFile(ino)));
}

// SQLite in DELETE mode: each transaction creates a -journal file, writes
// the pages it will change, fsyncs it, then commits the database and
// unlinks the journal. The new file's fsync journals (it used to seal), and
// its unlink drops it, unsealed and unuploaded, at once rather than a hold
// later: its hot slot is free for the next transaction's journal.
TEST_F(TailJournalTest, ADatabasesRollbackJournalIsNeitherSealedNorUploaded) {
  std::string db = RandomBytes(64 << 10, 590);
  const uint64_t db_ino = WriteFile("db", db);
  Drain();
  const uint64_t puts = store_->puts();
  for (int txn = 0; txn < 8; ++txn) {
    const uint64_t commits = Stat("journal_commits");
    const uint64_t j = Create("db-journal");
    const std::string pages = RandomBytes(8192 + 512, 591 + txn);
    auto jh = OpenH(j);
    ASSERT_TRUE(jh);
    WriteAt(jh.get(), 0, pages);
    WAVEFS_ASSERT_OK(fs_->Fsync(jh.get()));
    EXPECT_EQ(Stat("journal_commits"), commits + 1) << "transaction " << txn;
    EXPECT_TRUE(Journaled(j));
    // A kill now (a crash in the middle of the transaction) keeps it.
    if (txn == 3) {
      jh.reset();
      KillAndMount(LongHold());
      EXPECT_TRUE(SameBytes(pages, ReadFile(j)));
      jh = OpenH(j);
      ASSERT_TRUE(jh);
    }
    auto dh = OpenH(db_ino);
    ASSERT_TRUE(dh);
    const std::string page = RandomBytes(4096, 700 + txn);
    WriteAt(dh.get(), 4096 * (txn % 16), page);
    db.replace(4096 * (txn % 16), 4096, page);
    WAVEFS_ASSERT_OK(fs_->Fsync(dh.get()));
    WAVEFS_ASSERT_OK(fs_->Release(std::move(dh)));
    WAVEFS_ASSERT_OK(fs_->Release(std::move(jh)));
    WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "db-journal"));
    // Gone at once, not an hour (LongHold) later.
    ASSERT_TRUE(WaitFor([&] { return !Journaled(j); }, 10s));
    ASSERT_TRUE(WaitFor([&] { return Stat("hot_files") <= 1; }, 10s));
  }
  Drain();
  // The database's own seals (at most one per hold) are its only uploads.
  EXPECT_EQ(store_->puts(), puts) << "a rollback journal was uploaded";
  EXPECT_EQ(SpillCount(), 0u);
  EXPECT_TRUE(SameBytes(db, ReadFile(db_ino)));
  KillAndMount(LongHold());
  EXPECT_TRUE(SameBytes(db, ReadFile(db_ino)));
  EXPECT_EQ(LookupCode(kRootIno, "db-journal"), Code::kNotFound);
}

// A temporary file unlinked while open (tmpfile(3)) and written: its last
// release drops what it holds instead of sealing and uploading it.
TEST_F(TailJournalTest, AFileUnlinkedWhileOpenIsNotSealedAtItsRelease) {
  const uint64_t puts = store_->puts();
  const uint64_t ino = Create("tmp");
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "tmp"));
  const std::string data = RandomBytes(3 << 20, 595);
  WriteAt(h.get(), 0, data);
  EXPECT_TRUE(SameBytes(data, ReadAt(h.get(), 0, data.size())));
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Drain();
  EXPECT_EQ(store_->puts(), puts) << "a deleted file was uploaded";
  EXPECT_EQ(SpillCount(), 0u);
  auto gone = fs_->GetAttr(ino);
  EXPECT_FALSE(gone.ok());
}

// A database rewrites the same pages (its header page every transaction)
// in any order between two fsyncs: each page is one record, however often
// it was written, and a transaction touching many pages still journals.
TEST_F(TailJournalTest, RewrittenPagesAreJournaledOnce) {
  constexpr uint64_t kPage = 4096;
  std::string db = RandomBytes(64 * kPage, 570);
  const uint64_t ino = WriteFile("db", db);
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  auto write_page = [&](uint64_t page, int version) {
    const std::string bytes = RandomBytes(kPage, 1000 * version + page);
    WriteAt(h.get(), page * kPage, bytes);
    db.replace(page * kPage, kPage, bytes);
  };
  // Pages 0, 40 and 7, in turns, ten times each.
  for (int v = 0; v < 10; ++v)
    for (uint64_t page : {0, 40, 7}) write_page(page, v);
  const uint64_t bytes = Stat("journal_bytes");
  WAVEFS_ASSERT_OK(fs_->Fsync(h.get()));
  EXPECT_TRUE(Journaled(ino)) << "rewrites of three pages were sealed";
  EXPECT_EQ(Stat("journal_bytes") - bytes, 3 * kPage);
  // 30 scattered pages and a run of 4 adjacent ones in one transaction.
  for (uint64_t page = 1; page < 60; page += 2) write_page(page, 20);
  for (uint64_t page = 2; page < 6; ++page) write_page(page, 21);
  WAVEFS_ASSERT_OK(fs_->Fsync(h.get()));
  EXPECT_TRUE(Journaled(ino));
  EXPECT_TRUE(SameBytes(db, ReadFile(ino)));
  h.reset();
  KillAndMount(LongHold());
  EXPECT_TRUE(SameBytes(db, ReadFile(ino)));
}

TEST_F(TailJournalTest, WritesIntoTwoChunksSeal) {
  std::string log = RandomBytes(kC - 10, 530);
  const uint64_t ino = WriteFile("log", log);
  Append(ino, &log, RandomBytes(100, 531));  // crosses into chunk 1
  EXPECT_FALSE(Journaled(ino));
  Append(ino, &log, RandomBytes(100, 532));  // within chunk 1
  EXPECT_TRUE(Journaled(ino));
  // Overwrites in place are journaled as well, up to eight ranges a close.
  {
    auto h = OpenH(ino);
    ASSERT_TRUE(h);
    for (int i = 0; i < 3; ++i) {
      const uint64_t at = kC + 20 + 30 * i;
      WriteAt(h.get(), at, "XY");
      log.replace(at, 2, "XY");
    }
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  }
  EXPECT_TRUE(Journaled(ino));
  // A write into another chunk than the journal's seals.
  {
    auto h = OpenH(ino);
    ASSERT_TRUE(h);
    WriteAt(h.get(), 5, "zz");
    log.replace(5, 2, "zz");
    WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  }
  EXPECT_FALSE(Journaled(ino));
  KillAndMount(LongHold());
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

TEST_F(TailJournalTest, AFailedSealKeepsWhatTheJournalHolds) {
  std::atomic<bool> fail{false};
  FsOptions o = LongHold();
  o.hooks.stage_fault = [&](const Address&) {
    return fail ? Status::Error(Code::kIo, "injected stage failure")
                : Status::Ok();
  };
  Remount(o);
  std::string log = "start\n";
  const uint64_t ino = WriteFile("log", log);
  Append(ino, &log, "journaled one\n");
  Append(ino, &log, "journaled two\n");
  ASSERT_TRUE(Journaled(ino));
  // A write whose fsync fails to seal (it is in a second chunk, so it
  // cannot be journaled): that write is dropped and its writer told; the
  // closes before it still stand.
  fail = true;
  auto h = OpenH(ino);
  ASSERT_TRUE(h);
  WriteAt(h.get(), kC + 10, "dropped\n");
  EXPECT_FALSE(fs_->Fsync(h.get()).ok());
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  fail = false;
  ASSERT_TRUE(WaitFor([&] { return Stat("journal_replays") >= 1; }, 10s));
  EXPECT_TRUE(Journaled(ino));
  EXPECT_EQ(SizeOf(ino), log.size());
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  Append(ino, &log, "after the failure\n");
  KillAndMount(LongHold());
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  Remount(LongHold());
  EXPECT_FALSE(Journaled(ino));
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

TEST_F(TailJournalTest, AnUnlinkedHotFileGoesWithItsRecords) {
  std::string log = "start\n";
  const uint64_t ino = WriteFile("log", log);
  Append(ino, &log, "one\n");
  ASSERT_TRUE(Journaled(ino));
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "log"));
  EXPECT_EQ(LookupCode(kRootIno, "log"), Code::kNotFound);
  KillAndMount(LongHold());  // an orphan with records: both go at start
  EXPECT_FALSE(Journaled(ino));
  EXPECT_EQ(fs_->GetAttr(ino).status().code(), Code::kNotFound);

  // Unlinked, then a clean unmount.
  std::string other = "start\n";
  const uint64_t ino2 = WriteFile("other", other);
  Append(ino2, &other, "one\n");
  ASSERT_TRUE(Journaled(ino2));
  WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "other"));
  Remount(LongHold());
  EXPECT_FALSE(Journaled(ino2));
  EXPECT_EQ(fs_->GetAttr(ino2).status().code(), Code::kNotFound);
}

TEST_F(TailJournalTest, MoreHotFilesThanBuffersStayRight) {
  FsOptions o = LongHold();
  o.dirty_buffers = 4;
  o.max_buffers_per_file = 2;
  Remount(o);
  std::vector<uint64_t> inos;
  std::vector<std::string> logs(8);
  for (int f = 0; f < 8; ++f) {
    logs[f] = RandomBytes(100000 + f, 540 + f);
    inos.push_back(WriteFile("log" + std::to_string(f), logs[f]));
  }
  for (int round = 0; round < 6; ++round)
    for (int f = 0; f < 8; ++f)
      Append(inos[f], &logs[f],
             "round " + std::to_string(round) + " file " + std::to_string(f));
  // Each hot file keeps a buffer: half the pool at most.
  EXPECT_LE(Stat("hot_files"), 2u);
  EXPECT_GE(Stat("journal_commits"), 2u * 5u);
  for (int f = 0; f < 8; ++f)
    EXPECT_TRUE(SameBytes(logs[f], ReadFile(inos[f]))) << "file " << f;
  KillAndMount(o);
  for (int f = 0; f < 8; ++f)
    EXPECT_TRUE(SameBytes(logs[f], ReadFile(inos[f]))) << "file " << f;
  Remount(o);
  for (int f = 0; f < 8; ++f) EXPECT_FALSE(Journaled(inos[f]));
  for (int f = 0; f < 8; ++f)
    EXPECT_TRUE(SameBytes(logs[f], ReadFile(inos[f]))) << "file " << f;
}

TEST_F(TailJournalTest, AHotBufferNeededElsewhereIsSealedNotPagedOut) {
  FsOptions o = LongHold();
  o.dirty_buffers = 2;
  o.max_buffers_per_file = 2;
  Remount(o);
  std::string log = "start\n";
  const uint64_t ino = WriteFile("log", log);
  Append(ino, &log, "one\n");
  ASSERT_TRUE(Journaled(ino));
  // Another file takes both buffers: the log's goes, sealed (its journal's
  // end would seal it anyway), not paged out and brought back for that.
  auto h = OpenH(Create("other"));
  ASSERT_TRUE(h);
  WriteAt(h.get(), 0, "a");
  WriteAt(h.get(), kC, "b");
  EXPECT_EQ(Stat("page_outs"), 0u);
  WAVEFS_ASSERT_OK(fs_->Release(std::move(h)));
  Append(ino, &log, "two\n");
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
  KillAndMount(o);
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

TEST_F(TailJournalTest, OffSealsEveryClose) {
  FsOptions o = LongHold();
  o.tail_journal = false;
  Remount(o);
  std::string log = "start\n";
  const uint64_t ino = WriteFile("log", log);
  Append(ino, &log, "one\n");
  EXPECT_FALSE(Journaled(ino));
  EXPECT_EQ(Stat("journal_commits"), 0u);
  KillAndMount(o);
  EXPECT_TRUE(SameBytes(log, ReadFile(ino)));
}

TEST(TailJournalRecords, OpenOnlyWhatWasSealedThere) {
  ASSERT_TRUE(InitCrypto().ok());
  Secret secret;
  secret.fill(7);
  TailJournal j(secret, 1s);
  JournalRecord r;
  r.chunk_index = 3;
  r.offset = 4000;
  r.size = 3 * kC + 4010;
  r.mtime = {1700000000, 5};
  r.ctime = {1700000001, 6};
  r.atime = {1700000002, 7};
  r.data = "ten bytes!";
  const std::string sealed = j.Seal(42, 9, r);
  EXPECT_EQ(sealed.find("ten bytes!"), std::string::npos);
  auto back = j.Open(42, 9, sealed);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->chunk_index, 3u);
  EXPECT_EQ(back->offset, 4000u);
  EXPECT_EQ(back->size, r.size);
  EXPECT_EQ(back->mtime.tv_sec, 1700000000);
  EXPECT_EQ(back->mtime.tv_nsec, 5);
  EXPECT_EQ(back->ctime.tv_nsec, 6);
  EXPECT_EQ(back->atime.tv_nsec, 7);
  EXPECT_EQ(back->data, "ten bytes!");
  // Another place, another key, a flipped bit: none opens.
  EXPECT_EQ(j.Open(43, 9, sealed).status().code(), Code::kCorrupt);
  EXPECT_EQ(j.Open(42, 10, sealed).status().code(), Code::kCorrupt);
  Secret other = secret;
  other[0] ^= 1;
  EXPECT_EQ(TailJournal(other, 1s).Open(42, 9, sealed).status().code(),
            Code::kCorrupt);
  std::string bad = sealed;
  bad[bad.size() / 2] ^= 0x10;
  EXPECT_EQ(j.Open(42, 9, bad).status().code(), Code::kCorrupt);
  EXPECT_EQ(j.Open(42, 9, sealed.substr(0, 20)).status().code(),
            Code::kCorrupt);
  // Two seals of the same record differ (random nonces).
  EXPECT_NE(j.Seal(42, 9, r), sealed);
}

}  // namespace
}  // namespace fs_testing
}  // namespace wavefs
