// Turns an errno value into an Error whose message names the operation and object.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include "common/base/result.h"

namespace beaconbox {

inline ErrorCode ErrorCodeFromErrno(int err) {
  switch (err) {
    case ENOENT: return ErrorCode::kNotFound;
    case EEXIST: return ErrorCode::kAlreadyExists;
    case EPERM:
    case EACCES: return ErrorCode::kPermission;
    case EINVAL: return ErrorCode::kInvalidArgument;
    case ETIMEDOUT: return ErrorCode::kTimeout;
    case ENOSPC:
    case ENOMEM:
    case EMFILE: return ErrorCode::kExhausted;
    case ENOSYS:
    case EOPNOTSUPP: return ErrorCode::kNotImplemented;
    default: return ErrorCode::kInternal;
  }
}

// ErrnoError("open", path) -> "open /x: No such file or directory".
inline Error ErrnoError(std::string_view operation, std::string_view object, int err = errno) {
  std::string message(operation);
  if (!object.empty()) {
    message += ' ';
    message += object;
  }
  message += ": ";
  message += std::strerror(err);
  return Error{ErrorCodeFromErrno(err), std::move(message)};
}

}  // namespace beaconbox
