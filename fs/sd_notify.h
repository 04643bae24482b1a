// systemd's readiness protocol (sd_notify(3)) without libsystemd: one
// datagram of "KEY=VALUE" lines to the socket $NOTIFY_SOCKET names.
// Used by `wavefs mount --foreground` so a `Type=notify` unit
// (packaging/wavefs@.service) is "started" exactly when the mount is
// ready, and `systemctl status` shows how a flush at stop is going.
// Thread-safe (no shared state); a no-op without $NOTIFY_SOCKET.
#pragma once

#include <string>

namespace wavefs {

// Sends `state` (e.g. "READY=1\nSTATUS=mounted"); false when there is no
// socket or the send failed (systemd then times the start out, which is
// the right outcome for a daemon that cannot report).
bool NotifySystemd(const std::string& state);

}  // namespace wavefs
