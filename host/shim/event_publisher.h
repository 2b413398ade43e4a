// Publishes task events back to containerd over its ttrpc socket (TTRPC_ADDRESS),
// the way containerd's own shims do: Events.Forward with an Envelope.
#pragma once

#include <google/protobuf/message.h>

#include <memory>
#include <mutex>
#include <string>

#include "common/ttrpc/ttrpc.h"

namespace beaconbox::shim {

class EventPublisher {
 public:
  EventPublisher(std::string ttrpc_address, std::string namespace_name);

  // Sends one event, in order with the others; reconnects once if containerd closed
  // the connection. A failure is logged, never fatal: containerd also learns a
  // task's state through Wait and State.
  void Publish(const std::string& topic, const google::protobuf::Message& event);

 private:
  Status Forward(const std::string& request);

  const std::string address_;
  const std::string namespace_;
  std::mutex mutex_;  // one event at a time keeps them ordered
  std::unique_ptr<ttrpc::Client> client_;
};

}  // namespace beaconbox::shim
