// Names the calling thread (at most 15 characters, the kernel's limit) so
// that `top -H`, `ps -L`, /proc/PID/task/*/comm and perf tell the daemon's
// threads apart: FUSE workers stay "wavefs", the rest say what they do.
#pragma once

#include <pthread.h>

namespace wavefs {

inline void NameThisThread(const char* name) {
  pthread_setname_np(pthread_self(), name);
}

}  // namespace wavefs
