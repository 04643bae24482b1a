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
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

namespace wavefs {

// Runs the session until it exits (unmount, a signal, an error); returns 0
// or the first receive error (negative errno). threads >= 1.
int RunFuseLoop(fuse_session* se, unsigned threads);

}  // namespace wavefs
