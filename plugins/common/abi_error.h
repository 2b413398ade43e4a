// For in-tree plugins: turns beaconbox's Error into the ABI's status code and
// error buffer, in one place for every plugin.
#pragma once

#include "beaconbox/plugin_abi.h"
#include "beaconbox/plugin_support.hpp"
#include "common/base/result.h"

namespace beaconbox::plugins {

inline bbx_status AbiStatus(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return BBX_ERR_INVALID_ARGUMENT;
    case ErrorCode::kNotFound: return BBX_ERR_NOT_FOUND;
    case ErrorCode::kAlreadyExists: return BBX_ERR_ALREADY_EXISTS;
    case ErrorCode::kPermission: return BBX_ERR_PERMISSION;
    case ErrorCode::kUnavailable: return BBX_ERR_UNAVAILABLE;
    case ErrorCode::kExhausted: return BBX_ERR_EXHAUSTED;
    case ErrorCode::kTimeout: return BBX_ERR_TIMEOUT;
    case ErrorCode::kNotImplemented: return BBX_ERR_NOT_IMPLEMENTED;
    case ErrorCode::kFailedPrecondition: return BBX_ERR_UNAVAILABLE;
    case ErrorCode::kInternal: return BBX_ERR_INTERNAL;
  }
  return BBX_ERR_INTERNAL;
}

// Writes `error`'s message into the caller's buffer and returns its status.
inline bbx_status Fail(const Error& error, bbx_error* out) {
  return bbx::Fail(out, AbiStatus(error.code), error.message);
}

}  // namespace beaconbox::plugins
