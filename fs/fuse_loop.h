// The FUSE event loop: a set of worker threads, each receiving and
// processing requests with libfuse's session calls, as
// fuse_session_loop_mt does (signals go to the calling thread, which waits
// for the session to end), except that workers still waiting for a
// request at the end are woken by a signal (SIGUSR2) instead of cancelled.
//
// Why not fuse_session_loop_mt: libfuse 3.14 receives a request by splice
// or by read(2), chosen per request from conn->want, and its read path
// leaves the worker buffer's flags as the request before set them. After a
// write that came spliced ("in the pipe") the next request read into
// memory would be taken from an empty pipe: the request is lost and its
// caller hangs. Switching between the two at run time (fs/fuse_wire.h) so
// needs a loop that clears the flags before each receive; this is that
// loop.
//
// How many workers. `threads` of them stay for the session's life (the mt
// loop with idle threads equal to max threads, which mount.cc configured
// before: with fewer kept than can run, every burst of a few requests
// started a thread and ended it again). Requests that wait inside the
// daemon, a write for a pool buffer above all, hold their worker: with a
// fixed set, more files written at once than workers could leave every
// worker waiting for a buffer that another file's half-filled chunk held,
// while that file's next write sat in the kernel's queue with no worker to
// take it; only the pool's 50-250 ms eviction broke each stall (2 GiB by
// 12 `dd` at once: 84 s instead of 4-5 s, 2026-12-07). So when the loop
// has been held up for 1 ms, a watchdog starts another worker, up to
// `max_threads` (libfuse's mt loop grows to max_threads the same way, but
// at once for every request that finds no idle worker): with polling, when
// the receiver is stuck on one request and no follower is idle to take its
// role; without, when no worker has been in a receive for 1 ms. READs never
// make it grow: a read waits for the store, never for another request, and
// each read in flight may hold a chunk buffer beyond the budget (an
// overdraft), so more workers for reads only add memory (when reads made
// it grow, 200 random 1 MiB reads of a cold 1 GiB file took the loop to
// 17-27 workers with polling and 6-7 without, the peak RSS 2-7 MiB higher,
// no faster; with polling the receiver hands a READ on at once, so it is
// never the stuck one). A worker
// beyond `threads` leaves once it has waited `retire_after` for a request
// (with polling: a follower that long without the role; without: after
// the request that ended such a wait, since it cannot be asked to leave
// while it sleeps in read(2)). Added workers' request buffers are not in
// the --memory-limit budget: a worker holds its 1 MiB only while a big
// write read into memory (not spliced) sits in it.
//
// One receiver at a time (--fuse-spin, RunFuseLoop's spin_us > 0). A FUSE
// request costs a round trip of task switches: the kernel wakes a worker
// sleeping in read(2), the worker's reply wakes the caller, the worker
// sleeps again. On this project's 2-core VMs the switches were ~35 % of
// the daemon's CPU during `tar -x` (perf: finish_task_switch under
// fuse_dev_do_read, __wake_up under the reply's writev). A program working
// through files sends its next request a few microseconds after the reply
// to its last; if the worker that replied is still awake, polling the
// device, that request costs no wake-up of the daemon at all. For that, no
// other worker may sleep on the device (the kernel would wake it for the
// request instead), so exactly one worker, the receiver, reads requests:
// it polls spin_us, then sleeps in read(2), and processes what it got
// itself (a spliced write stays in its thread's pipe). The others wait on
// a condition variable, not on the device. A watchdog thread hands the
// role to one of them when the receiver has been processing one request
// for 1 ms (a read waiting for the store, a write waiting for spill space,
// a commit), so that a slow request holds no other up for longer; the
// stuck worker becomes a follower when it is done. The watchdog looks
// every millisecond while requests come and parks after 100 ms without.
//
// Polling pays only while a CPU is free for it. When every CPU is wanted
// by other threads (the kernel's count of runnable threads, looked at once
// a millisecond, less the daemon's uploads, which no program waits for:
// util/background_work.h), the receiver sleeps in read(2) at once: on the
// 2-core VM, `openssl enc | tee FILE | openssl dgst` (four programs and the
// seal threads) writing 2 GiB ran no faster with polling (22.4-27.2 s against
// 22.3-23.5 s), and the daemon spent 15.3-17.7 s of CPU instead of
// 9.9-10.2 s, time the pipeline waited for.
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include <chrono>
#include <cstdint>
#include <functional>

namespace wavefs {

struct FuseLoopOptions {
  unsigned threads = 3;       // kept for the session (>= 1)
  unsigned max_threads = 64;  // at most at once (raised to threads)
  // > 0: one receiver at a time, which polls that long for the next
  // request before it sleeps (above).
  unsigned spin_us = 0;
  std::chrono::milliseconds retire_after{10000};
  // Called by the watchdog, once per look (every millisecond), while the
  // loop is held up and can start no more workers (max_threads reached):
  // every worker waits inside a request, and the requests that would end
  // those waits sit in the kernel's queue with no worker to take them. The
  // daemon then stops waiting for what only a worker could bring
  // (fs/write_pipeline.h, Unstick). Not called concurrently with itself.
  std::function<void()> saturated;
};

// Runs the session until it exits (unmount, a signal, an error); returns 0
// or the first receive error (negative errno).
int RunFuseLoop(fuse_session* se, const FuseLoopOptions& options);

// Times a receiver stuck on one request handed the role on (stats).
uint64_t FuseLoopHandoffs();

// The receiver's polling (stats): nanoseconds spent polling, and its looks
// at the CPUs, with how many found them contended (polling off then).
struct FuseLoopSpinStats {
  uint64_t spin_ns = 0;
  uint64_t looks = 0;
  uint64_t contended_looks = 0;
};
FuseLoopSpinStats FuseLoopSpin();

// The workers of the running loop (stats): alive now, the most at once,
// and how many the watchdog started beyond the kept ones.
struct FuseLoopThreadStats {
  unsigned now = 0;
  unsigned peak = 0;
  uint64_t added = 0;
};
FuseLoopThreadStats FuseLoopThreads();

// Looks of the watchdog that found the loop saturated (above; stats).
uint64_t FuseLoopSaturations();

}  // namespace wavefs
