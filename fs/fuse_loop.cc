#include "fs/fuse_loop.h"

#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <list>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "util/background_work.h"

namespace wavefs {
namespace {

// Sent to a worker blocked in receive once the session has ended, so that
// its read(2) or splice(2) returns EINTR and it leaves its loop. Workers
// are never cancelled: a cancelled thread unwinds past instrumented frames
// without unpoisoning them, which ASan reports when the thread ends, and a
// request being processed always gets its reply this way.
constexpr int kWakeSignal = SIGUSR2;

void Wake(int) {}

struct Worker;

struct Loop {
  fuse_session* se = nullptr;
  sem_t finished;  // posted by each worker that leaves its loop
  std::atomic<int> error{0};

  // The workers (the header, "How many workers"). A list: a worker's
  // address stays while others start and leave.
  unsigned base = 1;                // kept for the session
  unsigned max = 1;                 // at most at once
  std::function<void()> saturated;  // FuseLoopOptions::saturated
  int64_t retire_after_ns = 0;
  std::mutex workers_mu;
  std::list<Worker> workers;  // under workers_mu
  bool no_more = false;       // under workers_mu: the session ended
  std::atomic<unsigned> alive{0};

  // One receiver at a time (spin_us > 0, the header). The role changes
  // hands under mu, so that a follower never misses its wake-up.
  unsigned spin_us = 0;
  std::mutex mu;
  std::condition_variable follower_cv;
  std::atomic<Worker*> receiver{nullptr};
  bool closing = false;  // under mu: followers leave
  unsigned idle = 0;     // under mu: followers waiting for the role

  // Every worker receives (spin_us == 0): how many are in a receive now,
  // since when none has been (0 while one is), and how many process a
  // request other than a READ (only those make the loop grow: the header).
  std::atomic<unsigned> receiving{0};
  std::atomic<int64_t> all_busy_since{0};
  std::atomic<unsigned> busy_not_reading{0};

  // The watchdog's parking (while no request comes).
  std::mutex watch_mu;
  std::condition_variable watch_cv;
  std::atomic<bool> watch_parked{false};
  bool watch_stop = false;  // under watch_mu
};

std::atomic<uint64_t> g_handoffs{0};
std::atomic<uint64_t> g_saturations{0};
std::atomic<unsigned> g_threads{0};
std::atomic<unsigned> g_threads_peak{0};
std::atomic<uint64_t> g_threads_added{0};
std::atomic<uint64_t> g_spin_ns{0};
std::atomic<uint64_t> g_contended_looks{0};
std::atomic<uint64_t> g_looks{0};

// Whether every CPU of the machine is wanted by threads other than the
// receiver (the header): its polling then takes CPU time from a thread
// that waits for one (a pipeline of several programs, the seal threads of
// a big copy), and a wake-up is the cheaper way. Looks at the kernel's
// count of runnable threads (/proc/loadavg, ~2 us) at most once per
// kLookNs, and keeps a moving average of the looks, so that one busy
// moment (a background upload) does not stop the polling, nor one quiet
// one start it.
class CpuContention {
 public:
  CpuContention() {
    fd_ = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    cpus_ = n > 0 ? static_cast<int>(n) : 1;
  }
  ~CpuContention() {
    if (fd_ >= 0) ::close(fd_);
  }
  CpuContention(const CpuContention&) = delete;
  CpuContention& operator=(const CpuContention&) = delete;

  // True while most recent looks found every CPU wanted by others. Without
  // /proc (or a count it cannot read): never.
  bool Contended(int64_t now) {
    if (fd_ >= 0 && now >= next_look_) {
      next_look_ = now + kLookNs;
      Look();
    }
    return score_ >= kHalf;
  }

 private:
  void Look() {
    char text[128];
    const ssize_t n = ::pread(fd_, text, sizeof(text) - 1, 0);
    if (n <= 0) return;
    text[n] = '\0';
    // "0.52 0.58 0.59 3/187 4242": runnable/all scheduling entities.
    int running = 0;
    if (std::sscanf(text, "%*s %*s %*s %d/", &running) != 1) return;
    // running counts this thread (it runs the read), and uploads, which
    // no program waits for (util/background_work.h).
    const int others = running - 1 - BackgroundWork::Running();
    score_ = (score_ * 7 + (others >= cpus_ ? kFull : 0)) / 8;
    g_looks.fetch_add(1, std::memory_order_relaxed);
    if (score_ >= kHalf)
      g_contended_looks.fetch_add(1, std::memory_order_relaxed);
  }

  static constexpr int64_t kLookNs = 1000 * 1000;
  static constexpr int kFull = 1024;
  static constexpr int kHalf = kFull / 2;
  int fd_ = -1;
  int cpus_ = 1;
  int64_t next_look_ = 0;
  int score_ = 0;
};

struct Worker {
  Loop* loop = nullptr;
  pthread_t thread{};
  std::atomic<bool> done{false};
  // Between its last look at the session and the end of a receive: the
  // only time the wake-up signal is sent, so that no system call of a
  // request being processed sees EINTR from it.
  std::atomic<bool> receiving{false};
  // Monotonic nanoseconds at which the worker began processing its current
  // request, 0 while it receives or waits.
  std::atomic<int64_t> busy_since{0};
  fuse_buf buf{};
  CpuContention contention;  // the receiver's looks (spin_us > 0)
};

int64_t NowNs() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec;
}

// Receives one request into w->buf; false when the worker is to leave
// (the session ended or failed). *got is set when a request arrived.
bool Receive(Worker* w, bool* got) {
  fuse_session* se = w->loop->se;
  *got = false;
  w->receiving.store(true, std::memory_order_seq_cst);
  if (fuse_session_exited(se)) {
    w->receiving.store(false, std::memory_order_seq_cst);
    return false;
  }
  // The read path keeps whatever flags the buffer had (header above).
  w->buf.flags = static_cast<fuse_buf_flags>(0);
  const int res = fuse_session_receive_buf(se, &w->buf);
  w->receiving.store(false, std::memory_order_seq_cst);
  // ENOENT: the request was interrupted while being read; try again,
  // as libfuse's read path does.
  if (res == -EINTR || res == -EAGAIN || res == -ENOENT) return true;
  if (res <= 0) {  // 0: unmounted or exited
    if (res < 0) {
      int none = 0;
      w->loop->error.compare_exchange_strong(none, res);
      fuse_session_exit(se);
    }
    return false;
  }
  *got = true;
  return true;
}

void UnblockWake() {
  sigset_t wake;
  sigemptyset(&wake);
  sigaddset(&wake, kWakeSignal);
  pthread_sigmask(SIG_UNBLOCK, &wake, nullptr);
}

void Leave(Worker* w) {
  w->done.store(true, std::memory_order_release);
  sem_post(&w->loop->finished);
}

// Whether a worker idle for retire_after may leave: only while more than
// the kept number are alive (the count goes down here, so that two leaving
// at once never take it below).
bool Retire(Loop* loop) {
  unsigned n = loop->alive.load(std::memory_order_relaxed);
  while (n > loop->base) {
    if (loop->alive.compare_exchange_weak(n, n - 1)) {
      g_threads.fetch_sub(1, std::memory_order_relaxed);
      return true;
    }
  }
  return false;
}

void* Work(void* arg);
void* WorkOneReceiver(void* arg);

// Joins the workers that left (under workers_mu).
void ReapLocked(Loop* loop) {
  for (auto it = loop->workers.begin(); it != loop->workers.end();) {
    if (!it->done.load(std::memory_order_acquire)) {
      ++it;
      continue;
    }
    pthread_join(it->thread, nullptr);
    std::free(it->buf.mem);
    it = loop->workers.erase(it);
  }
}

// Starts one more worker unless the session ended or max are alive; true
// if it did. One beyond the kept number counts as added (stats). Called with
// every signal blocked (the worker inherits that and unblocks only the
// wake-up).
bool StartWorker(Loop* loop) {
  std::lock_guard<std::mutex> lock(loop->workers_mu);
  ReapLocked(loop);
  if (loop->no_more || loop->alive.load(std::memory_order_relaxed) >= loop->max)
    return false;
  Worker& w = loop->workers.emplace_back();
  w.loop = loop;
  const int rc = pthread_create(&w.thread, nullptr,
                                loop->spin_us > 0 ? WorkOneReceiver : Work, &w);
  if (rc != 0) {
    spdlog::error("cannot start a FUSE thread: {}", std::strerror(rc));
    loop->workers.pop_back();
    return false;
  }
  pthread_setname_np(w.thread, "wfs-fuse");
  if (loop->alive.fetch_add(1, std::memory_order_relaxed) >= loop->base)
    g_threads_added.fetch_add(1, std::memory_order_relaxed);
  const unsigned now = g_threads.fetch_add(1, std::memory_order_relaxed) + 1;
  unsigned peak = g_threads_peak.load(std::memory_order_relaxed);
  while (now > peak && !g_threads_peak.compare_exchange_weak(peak, now)) {
  }
  return true;
}

void UnparkWatch(Loop* loop) {
  if (!loop->watch_parked.load(std::memory_order_seq_cst)) return;
  std::lock_guard<std::mutex> lock(loop->watch_mu);
  loop->watch_parked.store(false, std::memory_order_seq_cst);
  loop->watch_cv.notify_one();
}

bool IsRead(const fuse_buf& buf) {
  if ((buf.flags & FUSE_BUF_IS_FD) || buf.size < sizeof(fuse_in_header))
    return false;
  fuse_in_header h;
  std::memcpy(&h, buf.mem, sizeof(h));
  return h.opcode == FUSE_READ;
}

// Every worker receives (spin_us == 0): the kernel wakes an idle one per
// request. The worker that takes the last idle one notes when, for the
// watchdog (none idle for 1 ms, one of them not on a READ: another worker
// starts). A request that
// comes after retire_after of waiting is the last of a worker beyond the
// kept number (it cannot be asked to leave while it sleeps in read(2)).
void* Work(void* arg) {
  auto* w = static_cast<Worker*>(arg);
  Loop* loop = w->loop;
  UnblockWake();
  for (;;) {
    if (loop->receiving.fetch_add(1, std::memory_order_seq_cst) == 0)
      loop->all_busy_since.store(0, std::memory_order_seq_cst);
    const int64_t began = NowNs();
    bool got = false;
    const bool more = Receive(w, &got);
    const int64_t now = NowNs();
    // Counted before the receive count drops: a watchdog about to park
    // looks again after saying so, and must then see this request.
    const bool read = got && IsRead(w->buf);
    if (got && !read)
      loop->busy_not_reading.fetch_add(1, std::memory_order_seq_cst);
    if (loop->receiving.fetch_sub(1, std::memory_order_seq_cst) == 1 && got) {
      loop->all_busy_since.store(now, std::memory_order_seq_cst);
      UnparkWatch(loop);
    }
    if (!more) break;
    if (!got) continue;
    fuse_session_process_buf(loop->se, &w->buf);
    if (!read) loop->busy_not_reading.fetch_sub(1, std::memory_order_seq_cst);
    if (now - began >= loop->retire_after_ns && Retire(loop)) {
      // Not counted as a leaving worker of the session: it ended nothing.
      w->done.store(true, std::memory_order_release);
      return nullptr;
    }
  }
  Leave(w);
  return nullptr;
}

// Polls fd, without sleeping, until a request is readable or `window`
// nanoseconds passed; true if one came. A request that comes while the
// receiver is awake costs no wake-up of it (the header).
bool SpinForRequest(int fd, int64_t window) {
  const int64_t until = NowNs() + window;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 0) return true;  // readable, hung up, an error
    if (NowNs() >= until) return false;
    __builtin_ia32_pause();
  }
}

// The polling window adapts, as KVM's halt polling does: a request that
// came after the window closed but within the most it may be (max) widens
// it (doubles, from 10 us); a wait longer than max narrows it (halves, to
// nothing below 5 us). A program whose requests come further apart than
// max (one computing between its writes) then costs no polling.
int64_t NextWindow(int64_t window, int64_t max, bool came_in_window,
                   int64_t waited) {
  if (came_in_window) return window;
  if (waited <= max) return std::min(max, std::max<int64_t>(window * 2, 10000));
  window /= 2;
  return window < 5000 ? 0 : window;
}

// Gives the receiver role up (to a waiting follower, or to whichever worker
// next looks for it, this one included).
bool HandOff(Loop* loop, Worker* w) {
  bool moved = false;
  {
    std::lock_guard<std::mutex> lock(loop->mu);
    Worker* self = w;
    moved = loop->receiver.compare_exchange_strong(self, nullptr,
                                                   std::memory_order_seq_cst);
  }
  if (moved) loop->follower_cv.notify_one();
  return moved;
}

// One receiver at a time (spin_us > 0): the others wait on follower_cv.
void* WorkOneReceiver(void* arg) {
  auto* w = static_cast<Worker*>(arg);
  Loop* loop = w->loop;
  UnblockWake();
  const int fd = fuse_session_fd(loop->se);
  const auto free_role = [&] {
    return loop->closing ||
           loop->receiver.load(std::memory_order_relaxed) == nullptr;
  };
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(loop->mu);
      ++loop->idle;
      bool retire = false;
      // A follower beyond the kept number leaves after retire_after
      // without the role.
      while (!free_role()) {
        if (loop->follower_cv.wait_for(
                lock, std::chrono::nanoseconds(loop->retire_after_ns)) ==
                std::cv_status::timeout &&
            !free_role() && Retire(loop)) {
          retire = true;
          break;
        }
      }
      --loop->idle;
      if (retire) {
        lock.unlock();
        w->done.store(true, std::memory_order_release);
        return nullptr;
      }
      if (loop->closing) break;
      loop->receiver.store(w, std::memory_order_seq_cst);
    }
    bool leave = false;
    const int64_t max = static_cast<int64_t>(loop->spin_us) * 1000;
    int64_t window = max;
    // Until the watchdog hands the role on (this worker got stuck).
    while (loop->receiver.load(std::memory_order_seq_cst) == w) {
      const int64_t began = NowNs();
      // Not while others wait for a CPU: the window then stays as it was,
      // for when they are done. (The look comes first: a window that
      // closed must still see the CPUs, and open again when they are
      // free, as it did before contention was looked at.)
      const bool contended = w->contention.Contended(began);
      const bool poll = window > 0 && !contended;
      const bool in_window = poll && SpinForRequest(fd, window);
      if (poll)
        g_spin_ns.fetch_add(static_cast<uint64_t>(NowNs() - began),
                            std::memory_order_relaxed);
      bool got = false;
      if (!Receive(w, &got)) {
        leave = true;
        break;
      }
      if (!got) continue;
      const int64_t now = NowNs();
      if (!contended) window = NextWindow(window, max, in_window, now - began);
      w->busy_since.store(now, std::memory_order_seq_cst);
      UnparkWatch(loop);
      // A read may wait for the store and decrypts up to 1 MiB: readers
      // in parallel (readahead, several programs) each get a worker at
      // once, as they did with every worker receiving.
      if (IsRead(w->buf)) HandOff(loop, w);
      fuse_session_process_buf(loop->se, &w->buf);
      w->busy_since.store(0, std::memory_order_seq_cst);
    }
    if (leave) break;
  }
  {
    // The session is over: no follower is to wait for the role.
    std::lock_guard<std::mutex> lock(loop->mu);
    loop->closing = true;
    Worker* self = w;
    loop->receiver.compare_exchange_strong(self, nullptr);
  }
  loop->follower_cv.notify_all();
  Leave(w);
  return nullptr;
}

// A receiver that has been processing one request for kStuckNs (a read
// waiting on the store, a write waiting for spill space or a pool buffer, a
// commit) hands the role to a follower, so that other requests are not
// held up behind it; with no follower idle, another worker starts (up to
// max) and takes it. Without a receiver role (spin_us == 0): when no
// worker has been in a receive for kStuckNs, another starts. Parks after
// kParkAfterNs with nothing held up; the next request unparks it.
constexpr int64_t kStuckNs = 1000 * 1000;
constexpr int64_t kParkAfterNs = 100 * 1000 * 1000;

// Since when the loop is held up (0: it is not): the receiver's current
// request (*r set), or the time since no worker receives.
int64_t HeldSince(Loop* loop, Worker** r) {
  *r = nullptr;
  if (loop->spin_us > 0) {
    *r = loop->receiver.load(std::memory_order_seq_cst);
    return *r ? (*r)->busy_since.load(std::memory_order_seq_cst) : 0;
  }
  if (loop->receiving.load(std::memory_order_seq_cst) != 0) return 0;
  const int64_t since = loop->all_busy_since.load(std::memory_order_seq_cst);
  // All on READs: they wait for nothing another request must bring, and
  // more of them at once only add buffers (the header).
  if (loop->busy_not_reading.load(std::memory_order_seq_cst) == 0) return 0;
  return since;
}

// Held up with no worker to add (FuseLoopOptions::saturated).
void Saturated(Loop* loop) {
  g_saturations.fetch_add(1, std::memory_order_relaxed);
  if (loop->saturated) loop->saturated();
}

void Watch(Loop* loop) {
  int64_t last_busy = NowNs();
  // Ticking, it is runnable now and then, and waits for a CPU when they
  // are busy: the receiver's look at the CPUs leaves it out.
  std::optional<BackgroundWork::Scope> ticking(std::in_place);
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(loop->watch_mu);
      if (loop->watch_stop) return;
    }
    Worker* r = nullptr;
    int64_t since = HeldSince(loop, &r);
    const int64_t now = NowNs();
    if (since != 0) {
      last_busy = now;
      if (now - since >= kStuckNs) {
        if (r != nullptr) {
          if (HandOff(loop, r)) {
            g_handoffs.fetch_add(1, std::memory_order_relaxed);
            bool none_idle = false;
            {
              std::lock_guard<std::mutex> lock(loop->mu);
              none_idle = loop->idle == 0 && !loop->closing;
            }
            if (none_idle && !StartWorker(loop)) Saturated(loop);
          }
        } else {
          if (!StartWorker(loop)) Saturated(loop);
          // The next look waits kStuckNs more, for the new worker to
          // reach its receive (or for the cap to change nothing).
          loop->all_busy_since.compare_exchange_strong(
              since, now, std::memory_order_seq_cst);
        }
        continue;
      }
    } else if (now - last_busy >= kParkAfterNs) {
      // Park; look once more after saying so, since a request may have
      // begun between the look above and the flag (both sides use
      // sequentially consistent order, so one of them sees the other).
      loop->watch_parked.store(true, std::memory_order_seq_cst);
      if (HeldSince(loop, &r) == 0) {
        ticking.reset();
        std::unique_lock<std::mutex> lock(loop->watch_mu);
        loop->watch_cv.wait(lock, [&] {
          return loop->watch_stop ||
                 !loop->watch_parked.load(std::memory_order_seq_cst);
        });
        if (loop->watch_stop) return;
        ticking.emplace();
      }
      loop->watch_parked.store(false, std::memory_order_seq_cst);
      last_busy = NowNs();
      continue;
    }
    const int64_t wait = since != 0 ? since + kStuckNs - now : kStuckNs;
    std::unique_lock<std::mutex> lock(loop->watch_mu);
    loop->watch_cv.wait_for(lock, std::chrono::nanoseconds(wait),
                            [&] { return loop->watch_stop; });
  }
}

}  // namespace

uint64_t FuseLoopHandoffs() {
  return g_handoffs.load(std::memory_order_relaxed);
}

uint64_t FuseLoopSaturations() {
  return g_saturations.load(std::memory_order_relaxed);
}

FuseLoopSpinStats FuseLoopSpin() {
  FuseLoopSpinStats s;
  s.spin_ns = g_spin_ns.load(std::memory_order_relaxed);
  s.looks = g_looks.load(std::memory_order_relaxed);
  s.contended_looks = g_contended_looks.load(std::memory_order_relaxed);
  return s;
}

FuseLoopThreadStats FuseLoopThreads() {
  FuseLoopThreadStats t;
  t.now = g_threads.load(std::memory_order_relaxed);
  t.peak = g_threads_peak.load(std::memory_order_relaxed);
  t.added = g_threads_added.load(std::memory_order_relaxed);
  return t;
}

int RunFuseLoop(fuse_session* se, const FuseLoopOptions& options) {
  Loop loop;
  loop.se = se;
  loop.spin_us = options.spin_us;
  loop.base = std::max(1u, options.threads);
  loop.max = std::max(loop.base, options.max_threads);
  loop.saturated = options.saturated;
  loop.retire_after_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(options.retire_after)
          .count();
  g_threads.store(0, std::memory_order_relaxed);
  g_threads_peak.store(0, std::memory_order_relaxed);
  g_threads_added.store(0, std::memory_order_relaxed);
  sem_init(&loop.finished, 0, 0);
  // No SA_RESTART: the wake-up must interrupt the worker's receive.
  struct sigaction wake = {}, old_wake = {};
  wake.sa_handler = Wake;
  sigemptyset(&wake.sa_mask);
  sigaction(kWakeSignal, &wake, &old_wake);
  // Workers start with every signal blocked but the wake-up, so that
  // SIGTERM and friends reach this thread (fuse_set_signal_handlers exits
  // the session); the watchdog, which starts the added ones, too.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  unsigned started = 0;
  while (started < loop.base && StartWorker(&loop)) ++started;
  // Without polling, without room to add workers and with no one to tell
  // when saturated it has nothing to do.
  std::thread watchdog;
  if (started > 0 &&
      (loop.spin_us > 0 || loop.max > loop.base || loop.saturated)) {
    watchdog = std::thread(Watch, &loop);
    pthread_setname_np(watchdog.native_handle(), "wfs-fuse-watch");
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (started == 0) {
    sigaction(kWakeSignal, &old_wake, nullptr);
    sem_destroy(&loop.finished);
    return -EAGAIN;
  }
  // Interrupted by a signal, whose handler may have ended the session.
  while (!fuse_session_exited(se)) sem_wait(&loop.finished);
  {
    std::lock_guard<std::mutex> lock(loop.mu);
    loop.closing = true;
  }
  loop.follower_cv.notify_all();
  // After an unmount every receive returns at once; after a signal the
  // workers still wait for requests. The wake-up may land between a
  // worker's check and its receive, so it is sent again until all left; a
  // worker still processing a request finishes it first. No worker starts
  // any more (no_more).
  for (;;) {
    bool all_done = true;
    {
      std::lock_guard<std::mutex> lock(loop.workers_mu);
      loop.no_more = true;
      for (auto& w : loop.workers) {
        if (w.done.load(std::memory_order_acquire)) continue;
        all_done = false;
        if (w.receiving.load(std::memory_order_seq_cst))
          pthread_kill(w.thread, kWakeSignal);
      }
    }
    if (all_done) break;
    timespec pause{0, 20 * 1000 * 1000};
    nanosleep(&pause, nullptr);
  }
  {
    std::lock_guard<std::mutex> lock(loop.workers_mu);
    ReapLocked(&loop);
  }
  if (watchdog.joinable()) {
    {
      std::lock_guard<std::mutex> lock(loop.watch_mu);
      loop.watch_stop = true;
    }
    loop.watch_cv.notify_all();
    watchdog.join();
  }
  g_threads.store(0, std::memory_order_relaxed);
  sigaction(kWakeSignal, &old_wake, nullptr);
  sem_destroy(&loop.finished);
  fuse_session_reset(se);
  return loop.error.load();
}

}  // namespace wavefs
