// Fuzz target: the bytes are what a CNI plugin printed on stdout (issue 15): a result,
// an error object, or anything a buggy or hostile plugin writes. ParseCniResult must
// answer every input with a result within the limits or one error line naming the
// plugin; an accepted result must translate to the guest's attachment (or one error)
// without crashing; CniErrorMessage must return one bounded line.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "plugins/net-cni/cni_network.h"
#include "plugins/net-cni/cni_result.h"

namespace {

void Die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz: %s: %s\n", what, detail.c_str());
  std::abort();
}

bool NoNewline(const std::string& text) {
  for (unsigned char c : text) {
    if (c == '\n' || c == '\r') return false;
  }
  return true;
}

bool OneLine(const std::string& text) { return !text.empty() && NoNewline(text); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace beaconbox::cni;
  std::string_view text(reinterpret_cast<const char*>(data), size);

  // Empty when the plugin printed nothing: the caller then shows its stderr.
  const std::string message = CniErrorMessage(text);
  if (!NoNewline(message) || message.size() > 1700) Die("CniErrorMessage is not one line", message);

  CniLimits limits;
  auto result = ParseCniResult(text, "fuzzplugin", limits);
  if (!result.ok()) {
    if (!OneLine(result.error().message)) Die("error is not one line", result.error().message);
    if (result.error().message.find("fuzzplugin") == std::string::npos) {
      Die("error does not name the plugin", result.error().message);
    }
    return 0;
  }
  if (result->interfaces.size() > limits.max_interfaces || result->ips.size() > limits.max_ips ||
      result->routes.size() > limits.max_routes ||
      result->nameservers.size() > limits.max_dns_entries ||
      result->search.size() > limits.max_dns_entries) {
    Die("a count beyond the limits was accepted", std::string(text.substr(0, 200)));
  }
  for (const auto& ip : result->ips) {
    if (ip.interface >= static_cast<int>(result->interfaces.size())) {
      Die("an IP names an interface the result does not have", ip.address);
    }
  }
  auto attachment = AttachmentFromResult(*result, "eth0", "/run/netns/fuzz", "02:00:00:00:00:01");
  if (!attachment.ok() && !OneLine(attachment.error().message)) {
    Die("attachment error is not one line", attachment.error().message);
  }
  return 0;
}
