// The ABI's network ops of an in-tree network plugin, written once where every
// network plugin translates alike. A plugin whose `struct bbx_plugin` holds
// `std::unique_ptr<N> network` (N with Attach, Reconcile and ListLeases returning
// beaconbox Results of plugin.v1 messages) puts these in its bbx_network_ops table,
// e.g. `.attach = beaconbox::plugins::NetworkAttachOp<bbx_plugin>`; Detach and Check,
// which differ, stay in its plugin.cc (with ParseNetworkRequest for the request).
#pragma once

#include <string>

#include "beaconbox/plugin/v1/network.pb.h"
#include "beaconbox/plugin_abi.h"
#include "beaconbox/plugin_support.hpp"
#include "plugins/common/abi_error.h"

namespace beaconbox::plugins {

// Parses a request the host passed in (at most 1 MiB); false with `error` filled, naming
// the message, when it does not parse.
template <typename Message>
bool ParseNetworkRequest(bbx_bytes bytes, Message& message, const char* name, bbx_error* error) {
  if (bytes.len > (1u << 20) || !message.ParseFromArray(bytes.data, static_cast<int>(bytes.len))) {
    bbx::Fail(error, BBX_ERR_INVALID_ARGUMENT, std::string("unparsable ") + name);
    return false;
  }
  return true;
}

template <typename Plugin>
bbx_status NetworkAttachOp(Plugin* plugin, bbx_bytes request_bytes, bbx_sink attachment_sink,
                           bbx_error* error) {
  beaconbox::plugin::v1::NetworkAttachRequest request;
  if (!ParseNetworkRequest(request_bytes, request, "NetworkAttachRequest", error)) {
    return BBX_ERR_INVALID_ARGUMENT;
  }
  auto attachment = plugin->network->Attach(request);
  if (!attachment.ok()) return Fail(attachment.error(), error);
  return bbx::WriteSink(attachment_sink, attachment->SerializeAsString(), error);
}

template <typename Plugin>
bbx_status NetworkReconcileOp(Plugin* plugin, bbx_sink report_sink, bbx_error* error) {
  auto report = plugin->network->Reconcile();
  if (!report.ok()) return Fail(report.error(), error);
  return bbx::WriteSink(report_sink, report->SerializeAsString(), error);
}

template <typename Plugin>
bbx_status NetworkListLeasesOp(Plugin* plugin, bbx_sink leases_sink, bbx_error* error) {
  auto leases = plugin->network->ListLeases();
  if (!leases.ok()) return Fail(leases.error(), error);
  return bbx::WriteSink(leases_sink, leases->SerializeAsString(), error);
}

// The ops table of a network plugin whose bbx_plugin has the members the templates
// above call: the plugin gives only its detach.
template <typename Plugin>
constexpr bbx_network_ops NetworkOpsTable(decltype(bbx_network_ops::detach) detach) {
  return bbx_network_ops{
      .struct_size = sizeof(bbx_network_ops),
      .attach = NetworkAttachOp<Plugin>,
      .detach = detach,
      .reconcile = NetworkReconcileOp<Plugin>,
      .list_leases = NetworkListLeasesOp<Plugin>,
  };
}

}  // namespace beaconbox::plugins
