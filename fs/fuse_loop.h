// The FUSE event loop: a fixed set of worker threads, each receiving and
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
// loop. Its workers stay for the session's life, like the mt loop with
// idle threads equal to max threads, which mount.cc configured before.
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

namespace wavefs {

// Runs the session until it exits (unmount, a signal, an error); returns 0
// or the first receive error (negative errno). threads >= 1. spin_us > 0:
// one receiver at a time, which polls that long for the next request
// before it sleeps (above).
int RunFuseLoop(fuse_session* se, unsigned threads, unsigned spin_us);

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

}  // namespace wavefs
