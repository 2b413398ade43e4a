#include "guest/vminitd/refresh.h"

#include <fcntl.h>
#include <linux/random.h>
#include <sys/ioctl.h>
#include <time.h>

#include <cstring>
#include <memory>
#include <string>

#include "common/base/errno_error.h"
#include "common/base/unique_fd.h"

namespace beaconbox::guest {
namespace {

constexpr int64_t kNsPerSecond = 1000000000;
constexpr int64_t kEarliest = int64_t{1577836800} * kNsPerSecond;  // 2020-01-01
constexpr int64_t kLatest = int64_t{7258118400} * kNsPerSecond;    // 2200-01-01

}  // namespace

Status CheckRefreshInput(size_t entropy_bytes, int64_t unix_time_ns) {
  if (entropy_bytes < kMinRefreshEntropy || entropy_bytes > kMaxRefreshEntropy) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "Refresh entropy of " + std::to_string(entropy_bytes) + " bytes: want " +
                         std::to_string(kMinRefreshEntropy) + " to " +
                         std::to_string(kMaxRefreshEntropy));
  }
  if (unix_time_ns < kEarliest || unix_time_ns >= kLatest) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "Refresh time " + std::to_string(unix_time_ns) +
                         " ns is not between 2020 and 2200: send the host's CLOCK_REALTIME");
  }
  return Status::Ok();
}

Status AddEntropyAndReseed(std::string_view bytes, const char* random_device) {
  if (bytes.empty() || bytes.size() > kMaxRefreshEntropy) {
    return MakeError(ErrorCode::kInvalidArgument, "entropy size out of bounds");
  }
  UniqueFd fd(::open(random_device, O_WRONLY | O_CLOEXEC));
  if (!fd) return ErrnoError("open", random_device);
  // struct rand_pool_info ends in a flexible array: one buffer for header and bytes.
  const size_t size = sizeof(struct rand_pool_info) + bytes.size();
  auto buffer = std::make_unique<unsigned char[]>(size);
  auto* info = reinterpret_cast<struct rand_pool_info*>(buffer.get());
  info->entropy_count = static_cast<int>(bytes.size() * 8);
  info->buf_size = static_cast<int>(bytes.size());
  std::memcpy(info->buf, bytes.data(), bytes.size());
  if (::ioctl(fd.get(), RNDADDENTROPY, info) != 0) {
    return ErrnoError("ioctl RNDADDENTROPY", random_device);
  }
  if (::ioctl(fd.get(), RNDRESEEDCRNG) != 0) {
    return ErrnoError("ioctl RNDRESEEDCRNG", random_device);
  }
  return Status::Ok();
}

Status SetRealtimeClock(int64_t unix_time_ns) {
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(unix_time_ns / kNsPerSecond);
  ts.tv_nsec = static_cast<long>(unix_time_ns % kNsPerSecond);
  if (::clock_settime(CLOCK_REALTIME, &ts) != 0) return ErrnoError("clock_settime", "REALTIME");
  return Status::Ok();
}

}  // namespace beaconbox::guest
