// Publishes task events back to containerd over its ttrpc socket (TTRPC_ADDRESS),
// the way containerd's own shims do: Events.Forward with an Envelope.
#pragma once

#include <google/protobuf/message_lite.h>

#include <memory>
#include <mutex>
#include <string>

#include "common/ttrpc/ttrpc.h"

namespace beaconbox::shim {

// Where task events go: containerd (EventPublisher) or, in unit tests, a recorder.
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void Publish(const std::string& topic, const google::protobuf::MessageLite& event) = 0;
};

class EventPublisher final : public EventSink {
 public:
  EventPublisher(std::string ttrpc_address, std::string namespace_name);

  // Sends one event, in order with the others; reconnects once if containerd closed
  // the connection. A failure is logged, never fatal: containerd also learns a
  // task's state through Wait and State.
  void Publish(const std::string& topic, const google::protobuf::MessageLite& event) override;

 private:
  Status Forward(const std::string& request);

  const std::string address_;
  const std::string namespace_;
  std::mutex mutex_;                       // one event at a time keeps them ordered
  std::unique_ptr<ttrpc::Client> client_;  // guarded by mutex_
};

}  // namespace beaconbox::shim
