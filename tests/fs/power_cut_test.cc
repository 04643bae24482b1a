// Power cuts at every step of the write and upload path.
//
// A workload (create, write, close, fsync, overwrite with O_TRUNC, append,
// fsyncs of a log through the tail journal, unlink, fsyncdir, uploads) runs on
// a real index, spill and local store whose every mutating file call goes
// through a PowerCutEnv. A dry run counts those calls; then, for each call
// number n, the workload runs again and the power is cut just before call n:
// the env builds the tree a rebooted machine could find (unsynced bytes
// dropped, torn or zeroed; directory changes since the last directory sync kept
// only up to a point). The test then reopens everything on that tree, as the
// daemon does after a reboot, and checks what a user was promised:
// - every file whose fsync (or a later fsync/fsyncdir of anything: both
//   sync the whole index) returned before the cut reads back as that
//   version or a later committed one;
// - every other file reads as one of its committed versions, or is absent
//   if its creation was never made durable;
// - an unlink made durable by fsyncdir stays done;
// - nothing is lost: every remaining file reads without error (no data map
//   names a chunk that exists nowhere) and the uploads left pending finish.
// PowerCutWritebackTest then lets unsynced index bytes survive while chunk
// bytes do not (what kernel writeback can do to files nobody fsynced) and
// checks the weaker promise: fsynced files are intact and nothing reads
// back wrong bytes.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <filesystem>
#include <map>

#include "fs_fixture.h"
#include "store/local_store.h"
#include "tests/testing/power_cut_env.h"

namespace wavefs {
namespace fs_testing {
namespace {

using testing_util::PowerCutEnv;
using Tear = PowerCutEnv::Tear;

// What the workload did to one name.
struct Expect {
  std::vector<std::string> versions;  // committed contents, in order
  int durable = -1;  // versions[durable..] only; -1: may also be absent
  bool unlinked = false;
  bool unlink_durable = false;
};

class PowerCutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(InitCrypto().ok());
    spdlog::set_level(spdlog::level::err);  // a hundred reboots' worth
  }
  void TearDown() override {
    Close(false);
    spdlog::set_level(spdlog::level::info);
  }

  void Fresh() {
    Close(false);
    env_.reset();
    tmp_ = std::make_unique<TempDir>();
    index_dir_ = *tmp_ / "sys/index";
    spill_dir_ = *tmp_ / "sys/spill";
    store_dir_ = *tmp_ / "sys/store";
    for (const std::string& d : {index_dir_, spill_dir_, store_dir_})
      std::filesystem::create_directories(d);
    env_ = std::make_unique<PowerCutEnv>(
        std::vector<std::string>{index_dir_, spill_dir_, store_dir_},
        *tmp_ / "work");
    secret_.fill(0x33);
    files_.clear();
  }

  void Open() {
    Index::Options io;
    io.env = env_.get();
    auto index = Index::Open(index_dir_, io);
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    index_ = std::move(*index);
    auto spill = Spill::Open(spill_dir_, env_.get());
    ASSERT_TRUE(spill.ok()) << spill.status().ToString();
    spill_ = std::move(*spill);
    auto local = LocalStore::Open(store_dir_, env_.get());
    ASSERT_TRUE(local.ok()) << local.status().ToString();
    store_ = std::make_unique<CountingStore>(std::move(*local));
    auto recovered = RecoverAtStart(index_.get(), spill_.get(),
                                    kNewestChunkFormat, store_.get());
    ASSERT_TRUE(recovered.ok()) << recovered.status().ToString();
    recovery_ = *recovered;
    Uploader::Options uo;
    uo.concurrency = 1;
    uo.gather = 2ms;
    uo.initial_backoff = 1ms;
    uo.max_backoff = 5ms;
    uploader_ = std::make_unique<Uploader>(index_.get(), spill_.get(),
                                           store_.get(), uo);
    uploader_->Start();
    FsOptions o;
    o.spill_reserve_bytes = 0;
    // Journals end only with the unmount's sealed commit: the same calls
    // in every run, whatever the machine's speed.
    o.hot_tail_hold = std::chrono::hours(1);
    // Four hot files at most: a (its close after O_TRUNC), g, j and e.
    o.dirty_buffers = 8;
    o.space_wait = 10s;
    fs_ = std::make_unique<Filesystem>(index_.get(), spill_.get(), store_.get(),
                                       uploader_.get(), secret_, o);
  }

  // As the daemon stops; drain: wait for the uploads.
  void Close(bool drain) {
    if (fs_) (void)fs_->CommitAll();
    if (drain && uploader_) WAVEFS_EXPECT_OK(uploader_->Drain(60s, nullptr));
    fs_.reset();
    if (uploader_) uploader_->Stop();
    uploader_.reset();
    if (index_) (void)index_->Close();
    index_.reset();
    spill_.reset();
    store_.reset();
  }

  bool Cut() const { return env_->cut(); }

  // A committed version of name: recorded before the call that commits it,
  // since the cut may come while it runs.
  void Version(const std::string& name, const std::string& content) {
    files_[name].versions.push_back(content);
  }
  // A close (or a create, unlink, truncation) of name returned: after
  // kill -9 that version must survive.
  void Closed(const std::string& name) {
    if (!killed_ || Cut()) return;
    Expect& e = files_[name];
    e.durable = static_cast<int>(e.versions.size()) - 1;
    if (e.unlinked) e.unlink_durable = true;
  }
  // An fsync or fsyncdir returned: everything committed so far is durable
  // (both sync the whole index log) unless the power was cut before.
  void Synced() {
    if (Cut()) return;
    for (auto& [name, e] : files_) {
      e.durable = static_cast<int>(e.versions.size()) - 1;
      if (e.unlinked) e.unlink_durable = true;
    }
  }

  void WaitHotFiles(uint64_t n) {
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < until) {
      const std::string stats = fs_->StatsText("");
      if (stats.find("\nhot_files=" + std::to_string(n) + "\n") !=
          std::string::npos)
        return;
      std::this_thread::sleep_for(1ms);
    }
    ADD_FAILURE() << "hot files never became " << n << ": "
                  << fs_->StatsText("");
  }

  uint64_t Create(const std::string& name) {
    Version(name, "");
    auto a = fs_->MakeNode(kRootIno, name, kFileMode, 0, 0, 0);
    EXPECT_TRUE(a.ok()) << a.status().ToString();
    Closed(name);
    return a.ok() ? a->ino : 0;
  }
  void Write(FileHandle* h, uint64_t offset, const std::string& data) {
    for (size_t done = 0; done < data.size();) {
      const size_t n = std::min<size_t>(1 << 20, data.size() - done);
      auto r = fs_->Write(h, offset + done, data.data() + done, n);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      done += n;
    }
  }

  // The workload; every step a user could take on files that exist.
  void Workload() {
    const std::string a1 = RandomBytes(kC + (2 << 20), 1);
    const std::string b1 = RandomBytes((1 << 20) + 5, 2);
    const std::string a2 = RandomBytes(3 << 20, 3);
    const std::string c1 = RandomBytes(5 << 20, 4);
    const std::string c2 = c1 + RandomBytes(1 << 20, 5);
    const std::string d1 = RandomBytes(100 << 10, 6);
    const std::string e1 = RandomBytes(2 << 10, 7);

    // a: written and fsynced.
    const uint64_t a = Create("a");
    {
      auto h = fs_->Open(a, 0);
      ASSERT_TRUE(h.ok());
      Write(h->get(), 0, a1);
      Version("a", a1);
      WAVEFS_ASSERT_OK(fs_->Fsync(h->get()));
      Synced();
      WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
    }
    // b: written and closed, never fsynced.
    const uint64_t b = Create("b");
    {
      auto h = fs_->Open(b, 0);
      ASSERT_TRUE(h.ok());
      Write(h->get(), 0, b1);
      Version("b", b1);
      WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
      Closed("b");
    }
    // a: overwritten through O_TRUNC (cp over an existing file).
    {
      Version("a", "");
      auto h = fs_->Open(a, O_TRUNC);
      ASSERT_TRUE(h.ok());
      Closed("a");  // the truncation is committed at open
      Write(h->get(), 0, a2);
      Version("a", a2);
      WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
      Closed("a");
    }
    // c: fsynced, then appended to.
    const uint64_t c = Create("c");
    {
      auto h = fs_->Open(c, 0);
      ASSERT_TRUE(h.ok());
      Write(h->get(), 0, c1);
      Version("c", c1);
      WAVEFS_ASSERT_OK(fs_->Fsync(h->get()));
      Synced();
      Write(h->get(), c1.size(), c2.substr(c1.size()));
      Version("c", c2);
      WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
      Closed("c");
    }
    // g: a log, sealed at its close, then appended to and fsynced twice
    // through one open (a database's write-ahead log): those fsyncs commit
    // journal records (fs/tail_journal.h) on top of the sealed version.
    const std::string g1 = RandomBytes(300 << 10, 8);
    const std::string g2 = g1 + RandomBytes(5000, 9);
    const std::string g3 = g2 + RandomBytes(7000, 10);
    const uint64_t g = Create("g");
    {
      auto h = fs_->Open(g, 0);
      ASSERT_TRUE(h.ok());
      Write(h->get(), 0, g1);
      Version("g", g1);
      WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
      Closed("g");
    }
    {
      auto h = fs_->Open(g, 0);
      ASSERT_TRUE(h.ok());
      Write(h->get(), g1.size(), g2.substr(g1.size()));
      Version("g", g2);
      WAVEFS_ASSERT_OK(fs_->Fsync(h->get()));
      Synced();
      Write(h->get(), g2.size(), g3.substr(g2.size()));
      Version("g", g3);
      WAVEFS_ASSERT_OK(fs_->Fsync(h->get()));
      Synced();
      WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
      Closed("g");
    }
    // j: a database's rollback journal: new, written, fsynced (journal
    // records on an empty file), closed and unlinked (dropped unsealed).
    const std::string j1 = RandomBytes(12 << 10, 11);
    const uint64_t j = Create("j");
    {
      auto h = fs_->Open(j, 0);
      ASSERT_TRUE(h.ok());
      Write(h->get(), 0, j1);
      Version("j", j1);
      WAVEFS_ASSERT_OK(fs_->Fsync(h->get()));
      Synced();
      WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
      Closed("j");
    }
    files_["j"].unlinked = true;
    WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "j"));
    Closed("j");
    // Its drop runs on the journal's thread: wait for it, so that every
    // run makes the same calls in the same order.
    WaitHotFiles(2);  // a and g
    // b goes; fsyncdir makes that (and everything before) durable.
    files_["b"].unlinked = true;
    WAVEFS_ASSERT_OK(fs_->Unlink(kRootIno, "b"));
    Closed("b");
    WAVEFS_ASSERT_OK(fs_->FsyncDir());
    Synced();
    // d: closed, not synced; then the uploads run to the end.
    const uint64_t d = Create("d");
    {
      auto h = fs_->Open(d, 0);
      ASSERT_TRUE(h.ok());
      Write(h->get(), 0, d1);
      Version("d", d1);
      WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
      Closed("d");
    }
    WAVEFS_ASSERT_OK(uploader_->Drain(60s, nullptr));
    // e: after the uploads, written and fsynced.
    const uint64_t e = Create("e");
    {
      auto h = fs_->Open(e, 0);
      ASSERT_TRUE(h.ok());
      Write(h->get(), 0, e1);
      Version("e", e1);
      WAVEFS_ASSERT_OK(fs_->Fsync(h->get()));
      Synced();
      WAVEFS_ASSERT_OK(fs_->Release(std::move(*h)));
    }
  }

  // Reads name whole; nullopt with *error set when a read fails.
  std::optional<std::string> ReadName(const std::string& name, Status* error) {
    auto attr = fs_->Lookup(kRootIno, name);
    if (!attr.ok()) {
      *error = attr.status();
      return std::nullopt;
    }
    auto h = fs_->Open(attr->ino, 0);
    if (!h.ok()) {
      *error = h.status();
      return std::nullopt;
    }
    std::string out(attr->size, '\0');
    size_t done = 0;
    while (done < out.size()) {
      auto r = fs_->Read(h->get(), done, out.size() - done, out.data() + done);
      if (!r.ok()) {
        *error = r.status();
        (void)fs_->Release(std::move(*h));
        return std::nullopt;
      }
      if (*r == 0) break;
      done += *r;
    }
    out.resize(done);
    (void)fs_->Release(std::move(*h));
    return out;
  }

  // Checks every promise after the reboot. strict: unsynced index bytes
  // were dropped (the LevelDB model); else only the weak promise.
  void CheckAfterReboot(const std::string& where, bool strict) {
    for (const auto& [name, e] : files_) {
      SCOPED_TRACE(where + ", file " + name);
      Status error;
      std::optional<std::string> got = ReadName(name, &error);
      if (!got) {
        if (error.code() == Code::kNotFound) {
          EXPECT_TRUE(e.durable < 0 || e.unlinked)
              << name << " is gone although its version " << e.durable
              << " was made durable";
          continue;
        }
        // A read error: allowed only for never-synced data in the weak
        // model, and only if the reboot reported the loss.
        EXPECT_FALSE(strict)
            << "reading " << name << " failed: " << error.ToString();
        continue;
      }
      EXPECT_FALSE(e.unlink_durable)
          << name << " is back although its unlink was made durable";
      const int from = std::max(e.durable, 0);
      bool match = false;
      for (size_t v = static_cast<size_t>(from); v < e.versions.size(); ++v)
        match = match || *got == e.versions[v];
      if (!match && e.durable >= 0 && !strict) {
        // Weak model: a durable version must still be exact.
        ADD_FAILURE() << name << " (size " << got->size()
                      << ") is none of its durable versions";
      } else if (!match && strict) {
        ADD_FAILURE() << name << " (size " << got->size()
                      << ") is none of its committed versions from " << from;
      } else if (!match) {
        // Never synced, weak model: whatever it reads, it must not be
        // bytes that were never written (only zeros past a version).
        bool prefix_of_some = false;
        for (const std::string& v : e.versions)
          prefix_of_some = prefix_of_some || v.starts_with(*got);
        EXPECT_TRUE(prefix_of_some) << name << " reads bytes never written";
      }
    }
    // Everything left pending uploads after the reboot.
    Status drained = uploader_->Drain(30s, nullptr);
    if (strict) {
      EXPECT_TRUE(recovery_.lost_ranges.empty())
          << "start-up reported lost data: " << recovery_.lost_ranges[0];
      WAVEFS_EXPECT_OK(drained);
      EXPECT_EQ(uploader_->stats().lost_chunks, 0u)
          << uploader_->stats().lost_error;
    }
  }

  // index_tear kKeep: kill -9 instead of a power cut (other bytes kept
  // too); every close that returned must then hold.
  void RunCuts(Tear index_tear, bool strict) {
    killed_ = index_tear == Tear::kKeep;
    const char* stride_env = std::getenv("WAVEFS_POWER_CUT_STRIDE");
    const uint64_t stride =
        stride_env != nullptr ? std::max(1l, std::atol(stride_env)) : 1;
    // Dry run: how many mutating calls the workload makes.
    Fresh();
    Open();
    env_->ArmCut(UINT64_MAX, 0, Tear::kDrop, Tear::kDrop);
    Workload();
    // a's close after its O_TRUNC, g's two fsyncs and the first fsyncs of
    // j and e (small new files) went into the journal, not through a seal.
    const std::string stats = fs_->StatsText("");
    EXPECT_NE(stats.find("\njournal_commits=5\n"), std::string::npos) << stats;
    Close(true);
    const uint64_t total = env_->ops();
    ASSERT_GT(total, 40u) << "the workload made too few file calls";
    std::map<std::string, int> kinds;
    for (uint64_t n = 0; n < total + 5; n += stride) {
      const Tear other = killed_ ? Tear::kKeep : static_cast<Tear>(n % 3);
      Fresh();
      Open();
      env_->ArmCut(n, n * 7919 + 1, index_tear, other);
      Workload();
      Close(true);
      if (!env_->cut()) continue;  // this run made fewer calls
      const std::string op = env_->cut_op();
      kinds[op.substr(0, op.find(' '))]++;
      const std::string where =
          "power cut before call " + std::to_string(n) + " (" + op +
          "), chunk bytes " + testing_util::TearName(other) + ", index bytes " +
          testing_util::TearName(index_tear);
      WAVEFS_ASSERT_OK(env_->RestoreImage());
      Open();
      if (HasFatalFailure()) return;
      CheckAfterReboot(where, strict);
      Close(false);
      if (HasFailure()) {
        ADD_FAILURE() << where;
        return;
      }
    }
    std::string seen;
    for (const auto& [k, count] : kinds)
      seen += k + "=" + std::to_string(count) + " ";
    std::printf("[ power cut ] %llu calls; cuts by kind: %s\n",
                static_cast<unsigned long long>(total), seen.c_str());
    // Every kind of step was cut at least once. Only when every call was
    // cut: the uploader's threads make the order of the calls vary from
    // run to run, so whether every 7th call (WAVEFS_POWER_CUT_STRIDE=7)
    // hits one of the few unlink or syncfs calls is chance.
    if (stride == 1) {
      for (const char* k :
           {"create", "rename", "sync", "syncfs", "unlink", "index"})
        EXPECT_GT(kinds[k], 0) << "no cut before a '" << k << "' call";
    }
  }

  std::unique_ptr<TempDir> tmp_;
  std::string index_dir_, spill_dir_, store_dir_;
  std::unique_ptr<PowerCutEnv> env_;
  Secret secret_{};
  std::unique_ptr<Index> index_;
  std::unique_ptr<Spill> spill_;
  std::unique_ptr<CountingStore> store_;
  std::unique_ptr<Uploader> uploader_;
  std::unique_ptr<Filesystem> fs_;
  RecoveryReport recovery_;
  bool killed_ = false;
  std::map<std::string, Expect> files_;
};

TEST_F(PowerCutTest, EveryStepKeepsWhatWasPromised) {
  RunCuts(Tear::kDrop, /*strict=*/true);
}

TEST_F(PowerCutTest, KillAtEveryStepKeepsEveryClosedFile) {
  RunCuts(Tear::kKeep, /*strict=*/true);
}

TEST_F(PowerCutTest, WritebackOfUnsyncedIndexBytesNeverYieldsWrongBytes) {
  RunCuts(Tear::kPrefix, /*strict=*/false);
}

}  // namespace
}  // namespace fs_testing
}  // namespace wavefs
