#include "fs/fuse_loop.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace wavefs {
namespace {

struct Loop {
  fuse_session* se = nullptr;
  sem_t finished;  // posted by each worker that leaves its loop
  std::atomic<int> error{0};
};

struct Worker {
  Loop* loop = nullptr;
  pthread_t thread{};
  // Kept here, not on the worker's stack: a worker cancelled in receive
  // never gets to free it.
  fuse_buf buf{};
};

void* Work(void* arg) {
  auto* w = static_cast<Worker*>(arg);
  fuse_session* se = w->loop->se;
  while (!fuse_session_exited(se)) {
    // Cancellable only while waiting for a request, as in libfuse's loop:
    // a request being processed always gets its reply.
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, nullptr);
    // The read path keeps whatever flags the buffer had (header above).
    w->buf.flags = static_cast<fuse_buf_flags>(0);
    const int res = fuse_session_receive_buf(se, &w->buf);
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, nullptr);
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
  sem_post(&w->loop->finished);
  return nullptr;
}

}  // namespace

int RunFuseLoop(fuse_session* se, unsigned threads) {
  Loop loop;
  loop.se = se;
  sem_init(&loop.finished, 0, 0);
  std::vector<Worker> workers(threads == 0 ? 1 : threads);
  // Workers start with every signal blocked, so that SIGTERM and friends
  // reach this thread (fuse_set_signal_handlers exits the session).
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
    sem_destroy(&loop.finished);
    return -EAGAIN;
  }
  // Interrupted by a signal, whose handler may have ended the session.
  while (!fuse_session_exited(se)) sem_wait(&loop.finished);
  for (size_t i = 0; i < started; ++i) pthread_cancel(workers[i].thread);
  for (size_t i = 0; i < started; ++i) {
    pthread_join(workers[i].thread, nullptr);
    std::free(workers[i].buf.mem);
  }
  sem_destroy(&loop.finished);
  fuse_session_reset(se);
  return loop.error.load();
}

}  // namespace wavefs
