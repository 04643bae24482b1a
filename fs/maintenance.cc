#include "fs/maintenance.h"

#include <spdlog/spdlog.h>

#include <sstream>

#include "store/fsck.h"
#include "store/gc.h"
#include "store/thread_name.h"

namespace wavefs {

// Defined here rather than in filesystem.cc: only gc needs it.
Status Filesystem::ForEachUncommittedRef(
    const std::function<void(const Address&)>& fn) {
  for (auto& f : files_.All()) {
    std::lock_guard<std::mutex> lock(f->mu);
    for (const auto& [i, ref] : f->pending)
      if (!ref.hole) fn(ref.address);
  }
  return Status::Ok();
}

Maintenance::Maintenance(Filesystem* fs, Index* index, Spill* spill,
                         ChunkStore* store, ChunkFormat format)
    : fs_(fs), index_(index), spill_(spill), store_(store), format_(format) {}

Maintenance::~Maintenance() { Stop(); }

void Maintenance::ScheduleGc(std::chrono::seconds interval) {
  scheduler_ = std::thread([this, interval] {
    NameThisThread("wfs-gc-timer");
    std::unique_lock<std::mutex> lock(schedule_mu_);
    while (!schedule_cv_.wait_for(lock, interval,
                                  [this] { return schedule_stop_; })) {
      lock.unlock();
      Status st = Start(kXattrGc, "run");
      if (st.code() == Code::kBusy)
        spdlog::info("scheduled gc skipped: a gc or fsck is running");
      else if (!st.ok())
        spdlog::warn("scheduled gc did not start: {}", st.ToString());
      else
        spdlog::info("scheduled gc started (--gc-interval {} s)",
                     interval.count());
      lock.lock();
    }
  });
}

void Maintenance::Stop() {
  {
    std::lock_guard<std::mutex> lock(schedule_mu_);
    schedule_stop_ = true;
  }
  schedule_cv_.notify_all();
  if (scheduler_.joinable()) scheduler_.join();
  cancel_ = true;
  std::thread t;
  {
    std::lock_guard<std::mutex> lock(mu_);
    t = std::move(thread_);
  }
  if (t.joinable()) t.join();
}

Maintenance::Task* Maintenance::TaskOf(const std::string& name) {
  if (name == kXattrGc) return &gc_;
  if (name == kXattrFsck) return &fsck_;
  return nullptr;
}

Status Maintenance::Start(const std::string& name, const std::string& args) {
  bool gc = name == kXattrGc;
  bool dry_run = false, verify = false, repair = false;
  if (gc) {
    if (args == "dry-run") {
      dry_run = true;
    } else if (args != "run") {
      return Status::Error(
          Code::kInvalid, "gc: expected 'run' or 'dry-run', got '" + args + "'",
          EINVAL);
    }
  } else {
    std::stringstream in(args);
    std::string word;
    while (std::getline(in, word, ',')) {
      if (word == "verify") {
        verify = true;
      } else if (word == "repair") {
        repair = true;
      } else if (word != "check") {
        return Status::Error(Code::kInvalid,
                             "fsck: unknown option '" + word + "'", EINVAL);
      }
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (running_)
    return Status::Error(Code::kBusy, "a gc or fsck is running already", EBUSY);
  if (thread_.joinable()) thread_.join();  // the last one has finished
  Task* task = TaskOf(name);
  *task = Task{};
  task->state = "running";
  running_ = true;
  cancel_ = false;
  thread_ = std::thread([this, task, gc, dry_run, verify, repair] {
    NameThisThread("wfs-maint");
    auto progress = [this, task](const std::string& phase, uint64_t done,
                                 uint64_t total) {
      std::lock_guard<std::mutex> lock(mu_);
      task->phase = phase;
      task->done = done;
      task->total = total;
    };
    std::string report;
    int code = 0;
    bool ok = true;
    if (gc) {
      GcOptions o;
      o.dry_run = dry_run;
      o.cancel = &cancel_;
      o.snapshot_addresses = snapshot_addresses_;
      o.memory_refs = [this](const std::function<void(const Address&)>& fn) {
        return fs_->ForEachUncommittedRef(fn);
      };
      o.progress = [&](const GcProgress& p) {
        progress(p.phase, p.done, p.total);
      };
      auto r = CollectGarbage(index_, store_, o);
      if (r.ok()) {
        report = "removed=" + std::to_string(r->removed) +
                 "\nremoved_bytes=" + std::to_string(r->removed_bytes) +
                 "\nobjects=" + std::to_string(r->objects) +
                 "\nobject_bytes=" + std::to_string(r->object_bytes) +
                 "\nreferenced=" + std::to_string(r->referenced) +
                 "\nkept=" + std::to_string(r->kept) +
                 "\nfailed=" + std::to_string(r->failed) +
                 "\nsummary=" + r->Summary() + "\n";
        code = r->failed > 0 ? 1 : 0;
      } else {
        ok = false;
        report = "error=" + r.status().ToString() + "\n";
      }
    } else {
      FsckOptions o;
      o.verify = verify;
      o.repair = repair;
      o.index_repair = false;  // the daemon owns the namespace
      o.format = format_;
      o.progress = progress;
      auto r = CheckStore(index_, spill_, store_, o);
      if (r.ok()) {
        report = r->Text();
        code = r->ExitCode();
      } else {
        ok = false;
        report = "error=" + r.status().ToString() + "\n";
      }
    }
    spdlog::info("{} finished: {}", gc ? "gc" : "fsck",
                 ok ? "ok" : report.substr(0, report.size() - 1));
    std::lock_guard<std::mutex> lock(mu_);
    task->state = ok ? "done" : "failed";
    task->report = std::move(report);
    task->exit_code = ok ? code : 8;
    running_ = false;
  });
  return Status::Ok();
}

std::string Maintenance::StatusText(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  const Task* t = TaskOf(name);
  std::string s = "state=" + t->state + "\nphase=" + t->phase +
                  "\ndone=" + std::to_string(t->done) +
                  "\ntotal=" + std::to_string(t->total) + "\n";
  if (t->state == "done" || t->state == "failed") {
    s += "exit=" + std::to_string(t->exit_code) + "\n";
    // The kernel's limit for an attribute value is 64 KiB.
    const size_t room = 60000;
    if (t->report.size() > room) {
      const size_t cut = t->report.rfind('\n', room);
      s += t->report.substr(0, cut + 1) +
           "truncated=the report is longer; unmount and run 'wavefs fsck "
           "STORE' for all of it\n";
    } else {
      s += t->report;
    }
  }
  return s;
}

}  // namespace wavefs
