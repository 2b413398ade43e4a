// The guest's end of CRI port-forward (guest.proto PortOpen/PortRead/PortWrite/
// PortClose): TCP connections vminitd opens to the guest's own loopback for the
// shim, which carries each one's bytes from a connection containerd made in the
// pod's network namespace on the host.
//
// The shim is the only caller, but its requests are checked as any input is: a port
// outside 1..65535 is refused, at most kMaxStreams connections are open at once, and
// each stream's two directions are two StdioPipes (on dups of the socket), so a read
// that waits never holds up a write of the same connection, and no stream holds up
// another (the bounds of one call are stdio's).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>

#include "common/base/result.h"
#include "guest/vminitd/stdio_pipe.h"

namespace beaconbox::guest {

class PortStreams {
 public:
  static constexpr size_t kMaxStreams = 64;

  // Connects to 127.0.0.1:`port`, then [::1]:`port` when nothing listens there;
  // returns the stream's id. kFailedPrecondition naming the port when neither
  // answers, kExhausted at kMaxStreams.
  Result<uint64_t> Open(uint32_t port);

  struct Stream {
    std::shared_ptr<StdioPipe> reader;  // the connection's bytes towards the host
    std::shared_ptr<StdioPipe> writer;  // the host's bytes towards the connection
  };
  // The stream `id`, kNotFound once closed or never opened.
  Result<Stream> Find(uint64_t id);

  // Ends the host's direction (shutdown SHUT_WR: the peer reads EOF) when
  // `write_only`, else closes the connection and forgets `id`. Idempotent.
  Status Close(uint64_t id, bool write_only);

  // Closes every stream (the shim's connection ended).
  void CloseAll();

  ~PortStreams() { CloseAll(); }

 private:
  struct Entry {
    Stream stream;
    int socket = -1;  // the reader's descriptor, for shutdown; owned by `reader`
  };
  std::mutex mutex_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Entry> streams_;
};

}  // namespace beaconbox::guest
