// What a VM restored from a template (plugins/vmm-qemu/template.h) refreshes once the
// shim reaches it: every clone starts with the template's random pool and clock, so
// the shim sends fresh random bytes and its time (beaconbox.guest.v1.Guest.Refresh).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/base/result.h"

namespace beaconbox::guest {

// Bounds of Refresh's random bytes: enough to reseed, never a large buffer.
inline constexpr size_t kMinRefreshEntropy = 32;
inline constexpr size_t kMaxRefreshEntropy = 512;

// Checks a Refresh request before anything is changed: entropy size within the
// bounds, a time after 2020-01-01 and before 2200 (nanoseconds since the epoch).
Status CheckRefreshInput(size_t entropy_bytes, int64_t unix_time_ns);

// Adds `bytes` to the kernel's pool as entropy (RNDADDENTROPY on `random_device`)
// and reseeds the CRNG (RNDRESEEDCRNG), so /dev/urandom differs between clones.
Status AddEntropyAndReseed(std::string_view bytes, const char* random_device = "/dev/urandom");

// Sets CLOCK_REALTIME to `unix_time_ns`.
Status SetRealtimeClock(int64_t unix_time_ns);

}  // namespace beaconbox::guest
