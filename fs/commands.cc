// `wavefs init`, `wavefs unmount`, `wavefs status`.
#include "fs/commands.h"

#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "chunker/crypto.h"
#include "fs/options.h"
#include "fs/utab.h"
#include "store/store_config.h"
#include "store/store_location.h"

extern char** environ;

namespace wavefs {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "wavefs: %s\n", message.c_str());
  return 1;
}

std::map<std::string, std::string> ParseKeyValues(const std::string& text) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

Result<std::map<std::string, std::string>> ReadStats(const std::string& mnt) {
  std::string value(8192, '\0');
  ssize_t n =
      lgetxattr(mnt.c_str(), "user.wavefs.stats", value.data(), value.size());
  if (n < 0) {
    if (errno == ENOENT)
      return Status::Error(Code::kNotFound, mnt + " does not exist");
    return Status::Error(Code::kInvalid, mnt + " is not a wavefs mount point");
  }
  value.resize(static_cast<size_t>(n));
  return ParseKeyValues(value);
}

std::string Mib(const std::string& bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f MiB",
                std::strtoull(bytes.c_str(), nullptr, 10) / 1048576.0);
  return b;
}

int RunFusermount(const std::string& mnt, bool lazy = false) {
  std::vector<std::string> a = {"fusermount3", lazy ? "-uz" : "-u", mnt};
  std::vector<char*> argv;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, "fusermount3", nullptr, nullptr, argv.data(),
                   environ) != 0)
    return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Alive(pid_t pid) {
  if (pid <= 0 || kill(pid, 0) != 0) return false;
  // An exited daemon stays a zombie until its new parent (init) reaps it,
  // which can take seconds in containers: a zombie has finished.
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return true;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

}  // namespace

bool IsDeadMount(const std::string& mnt) {
  // statfs always reaches the daemon (stat may be answered from the
  // kernel's attribute cache for a second after the daemon died).
  struct statfs sf;
  return ::statfs(mnt.c_str(), &sf) != 0 && errno == ENOTCONN;
}

bool DetachStaleMount(const std::string& mnt) {
  if (geteuid() == 0 && umount2(mnt.c_str(), MNT_DETACH) == 0) return true;
  return RunFusermount(mnt, true) == 0;
}

int RunInit(const std::string& store, const std::string& key_file_opt,
            int format) {
  if (Status s = InitCrypto(); !s.ok()) return Fail(s.message());
  auto where = ResolveStore(store, "", "", "");
  if (!where.ok()) return Fail(where.status().message());
  if (!key_file_opt.empty() && access(key_file_opt.c_str(), F_OK) == 0)
    return Fail("key file " + key_file_opt +
                " already exists; wavefs never overwrites a key");
  if (format == 0) {
    format = static_cast<int>(DefaultChunkFormat(*where));
  }
  auto cfg = InitStore(*where, format);
  if (!cfg.ok()) {
    if (cfg.status().code() == Code::kExists)
      return Fail(where->Describe() + " is already a wavefs store");
    return Fail(cfg.status().message());
  }
  const std::string key_file = key_file_opt.empty()
                                   ? WavefsHome() + "/" + cfg->store_id + "/key"
                                   : key_file_opt;
  if (Status s = CreateKeyFile(key_file); !s.ok()) return Fail(s.message());
  std::printf(
      "wavefs: initialised store %s (id %s, format %d)\n"
      "wavefs: key file %s; back it up, the data cannot be read without it\n",
      where->Describe().c_str(), cfg->store_id.c_str(), cfg->format_version,
      key_file.c_str());
  return 0;
}

int RunUnmount(const std::string& mnt) {
  if (IsDeadMount(mnt)) {
    if (!DetachStaleMount(mnt))
      return Fail("cannot clear the dead mount at " + mnt);
    return Fail("the daemon of " + mnt +
                " had died; the dead mount is cleared and its pending uploads "
                "resume at the next mount");
  }
  auto stats = ReadStats(mnt);
  if (!stats.ok()) return Fail(stats.status().message());
  const pid_t pid = static_cast<pid_t>(std::atol((*stats)["pid"].c_str()));
  const std::string meta = (*stats)["meta_dir"];
  int rc;
  if (geteuid() == 0) {
    rc = umount2(mnt.c_str(), 0) == 0 ? 0 : errno;
    if (rc == EBUSY)
      return Fail(mnt + " is busy: close the files and shells using it first");
    if (rc != 0) rc = RunFusermount(mnt);
  } else {
    rc = RunFusermount(mnt);
  }
  if (rc != 0)
    return Fail("cannot unmount " + mnt + " (busy or not permitted)");
  // An entry mount.fuse.wavefs recorded (fs/utab.h) goes with the mount.
  if (geteuid() == 0) {
    char buf[PATH_MAX];
    if (::realpath(mnt.c_str(), buf) != nullptr) RemoveUtabEntries(buf);
  }
  const bool tty = isatty(2);
  auto last_print = std::chrono::steady_clock::now();
  std::map<std::string, std::string> st;
  while (Alive(pid)) {
    std::ifstream in(meta + "/daemon-status");
    std::stringstream ss;
    ss << in.rdbuf();
    st = ParseKeyValues(ss.str());
    const auto now = std::chrono::steady_clock::now();
    if (st["state"] == "draining" &&
        (tty || now - last_print > std::chrono::seconds(5))) {
      std::fprintf(stderr, "%swavefs: flushing, %s chunks (%s) left%s",
                   tty ? "\r" : "", st["pending_chunks"].c_str(),
                   Mib(st["pending_bytes"]).c_str(), tty ? "   " : "\n");
      last_print = now;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (tty) std::fprintf(stderr, "\r\033[K");
  std::ifstream in(meta + "/daemon-status");
  std::stringstream ss;
  ss << in.rdbuf();
  st = ParseKeyValues(ss.str());
  if (st["state"] == "clean") {
    std::printf("wavefs: unmounted %s; every chunk is in the store\n",
                mnt.c_str());
    return 0;
  }
  if (st["state"] == "lost")
    return Fail("unmounted " + mnt + " but " + st["lost_chunks"] +
                " chunks were lost this session (in neither the spill nor "
                "the store): " +
                st["lost_error"]);
  if (st["state"] == "pending")
    return Fail("unmounted " + mnt + " but " + st["pending_chunks"] +
                " chunks (" + Mib(st["pending_bytes"]) +
                ") are not uploaded yet: " + st["error"] +
                "; they resume at the next mount");
  return Fail("unmounted " + mnt +
              " but the daemon exited without a clean flush (see its log)");
}

int RunStatus(const std::string& mnt, bool watch) {
  do {
    auto stats = ReadStats(mnt);
    if (!stats.ok()) return Fail(stats.status().message());
    auto& s = *stats;
    const double pending =
        std::strtoull(s["pending_bytes"].c_str(), nullptr, 10) / 1048576.0;
    const double done =
        std::strtoull(s["uploaded_bytes"].c_str(), nullptr, 10) / 1048576.0;
    const double rate = std::strtod(s["upload_rate_mib_s"].c_str(), nullptr);
    std::string eta =
        rate > 0 && pending > 0
            ? std::to_string(static_cast<long>(pending / rate + 0.5)) + " s"
            : "-";
    if (watch) {
      const double total = pending + done;
      const int width = 30;
      const int filled =
          total > 0 ? static_cast<int>(width * done / total) : width;
      std::printf(
          "\r[%s%s] %s chunks (%.1f MiB) pending, %.1f MiB/s, ETA %s   ",
          std::string(filled, '#').c_str(),
          std::string(width - filled, '.').c_str(), s["pending_chunks"].c_str(),
          pending, rate, eta.c_str());
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::seconds(1));
    } else {
      std::printf(
          "store:            %s\npid:              %s\npending:          %s "
          "chunks, "
          "%.1f MiB\nuploaded:         %s chunks, %.1f MiB (this mount)\n"
          "upload rate:      %.1f MiB/s (last 3 s), ETA %s\nstore reads:      "
          "%s chunks\n"
          "upload error:     %s\n"
          "lost chunks:      %s\n",
          s["store"].c_str(), s["pid"].c_str(), s["pending_chunks"].c_str(),
          pending, s["uploaded_chunks"].c_str(), done, rate, eta.c_str(),
          s["store_gets"].c_str(),
          s["upload_error"].empty() ? "none" : s["upload_error"].c_str(),
          s["lost_chunks"].empty() ? "0" : s["lost_chunks"].c_str());
    }
  } while (watch);
  return 0;
}

}  // namespace wavefs
