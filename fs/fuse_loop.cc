#include "fs/fuse_loop.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

namespace wavefs {
namespace {

// Sent to a worker blocked in receive once the session has ended, so that
// its read(2) or splice(2) returns EINTR and it leaves its loop. Workers
// are never cancelled: a cancelled thread unwinds past instrumented frames
// without unpoisoning them, which ASan reports when the thread ends, and a
// request being processed always gets its reply this way.
constexpr int kWakeSignal = SIGUSR2;

void Wake(int) {}

struct Loop {
  fuse_session* se = nullptr;
  sem_t finished;  // posted by each worker that leaves its loop
  std::atomic<int> error{0};
};

struct Worker {
  Loop* loop = nullptr;
  pthread_t thread{};
  std::atomic<bool> done{false};
  // Between its last look at the session and the end of a receive: the
  // only time the wake-up signal is sent, so that no system call of a
  // request being processed sees EINTR from it.
  std::atomic<bool> receiving{false};
  fuse_buf buf{};
};

void* Work(void* arg) {
  auto* w = static_cast<Worker*>(arg);
  fuse_session* se = w->loop->se;
  sigset_t wake;
  sigemptyset(&wake);
  sigaddset(&wake, kWakeSignal);
  pthread_sigmask(SIG_UNBLOCK, &wake, nullptr);
  for (;;) {
    w->receiving.store(true, std::memory_order_seq_cst);
    if (fuse_session_exited(se)) break;
    // The read path keeps whatever flags the buffer had (header above).
    w->buf.flags = static_cast<fuse_buf_flags>(0);
    const int res = fuse_session_receive_buf(se, &w->buf);
    w->receiving.store(false, std::memory_order_seq_cst);
    // ENOENT: the request was interrupted while being read; try again,
    // as libfuse's read path does.
    if (res == -EINTR || res == -EAGAIN || res == -ENOENT) continue;
    if (res <= 0) {  // 0: unmounted or exited
      if (res < 0) {
        int none = 0;
        w->loop->error.compare_exchange_strong(none, res);
        fuse_session_exit(se);
      }
      break;
    }
    fuse_session_process_buf(se, &w->buf);
  }
  w->done.store(true, std::memory_order_release);
  sem_post(&w->loop->finished);
  return nullptr;
}

}  // namespace

int RunFuseLoop(fuse_session* se, unsigned threads) {
  Loop loop;
  loop.se = se;
  sem_init(&loop.finished, 0, 0);
  // No SA_RESTART: the wake-up must interrupt the worker's receive.
  struct sigaction wake = {}, old_wake = {};
  wake.sa_handler = Wake;
  sigemptyset(&wake.sa_mask);
  sigaction(kWakeSignal, &wake, &old_wake);
  std::vector<Worker> workers(threads == 0 ? 1 : threads);
  // Workers start with every signal blocked but the wake-up, so that
  // SIGTERM and friends reach this thread (fuse_set_signal_handlers exits
  // the session).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  size_t started = 0;
  for (auto& w : workers) {
    w.loop = &loop;
    const int rc = pthread_create(&w.thread, nullptr, Work, &w);
    if (rc != 0) {
      spdlog::error("cannot start a FUSE thread: {}", std::strerror(rc));
      break;
    }
    pthread_setname_np(w.thread, "wfs-fuse");
    ++started;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (started == 0) {
    sigaction(kWakeSignal, &old_wake, nullptr);
    sem_destroy(&loop.finished);
    return -EAGAIN;
  }
  // Interrupted by a signal, whose handler may have ended the session.
  while (!fuse_session_exited(se)) sem_wait(&loop.finished);
  // After an unmount every receive returns at once; after a signal the
  // workers still wait for requests. The wake-up may land between a
  // worker's check and its receive, so it is sent again until all left; a
  // worker still processing a request finishes it first.
  for (;;) {
    bool all_done = true;
    for (size_t i = 0; i < started; ++i) {
      if (workers[i].done.load(std::memory_order_acquire)) continue;
      all_done = false;
      if (workers[i].receiving.load(std::memory_order_seq_cst))
        pthread_kill(workers[i].thread, kWakeSignal);
    }
    if (all_done) break;
    timespec pause{0, 20 * 1000 * 1000};
    nanosleep(&pause, nullptr);
  }
  for (size_t i = 0; i < started; ++i) {
    pthread_join(workers[i].thread, nullptr);
    std::free(workers[i].buf.mem);
  }
  sigaction(kWakeSignal, &old_wake, nullptr);
  sem_destroy(&loop.finished);
  fuse_session_reset(se);
  return loop.error.load();
}

}  // namespace wavefs
