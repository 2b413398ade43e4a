// One error style for all of beaconbox's C++: a fallible function returns
// Result<T> (or Status when there is no value). The message is one line a user can
// act on: what is wrong and what to do. Exceptions do not cross component
// boundaries; code that calls a throwing library catches at its edge.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace beaconbox {

// Error codes mirror the plugin ABI's bbx_status and map onto gRPC/ttrpc codes.
enum class ErrorCode {
  kInvalidArgument,
  kNotFound,
  kAlreadyExists,
  kPermission,
  kUnavailable,
  kExhausted,
  kTimeout,
  kNotImplemented,
  kFailedPrecondition,
  kInternal,
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;

  // Prefixes context, e.g. Wrap("starting qemu") -> "starting qemu: <message>".
  Error Wrap(std::string_view context) const {
    return Error{code, std::string(context) + ": " + message};
  }
};

inline Error MakeError(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}
  Result(Error error) : state_(std::move(error)) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, Error> state_;
};

// Result<void>: success or an Error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}
  static Status Ok() { return Status(); }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

}  // namespace beaconbox

// Propagates an error from an expression yielding Status or Result<T>.
#define BBX_RETURN_IF_ERROR(expr)                 \
  do {                                            \
    auto bbx_status_ = (expr);                    \
    if (!bbx_status_.ok()) return bbx_status_.error(); \
  } while (0)

#define BBX_CONCAT_INNER(a, b) a##b
#define BBX_CONCAT(a, b) BBX_CONCAT_INNER(a, b)
// BBX_ASSIGN_OR_RETURN(auto x, Foo()); declares x from a Result or returns its error.
#define BBX_ASSIGN_OR_RETURN(decl, expr)                                  \
  auto BBX_CONCAT(bbx_result_, __LINE__) = (expr);                        \
  if (!BBX_CONCAT(bbx_result_, __LINE__).ok())                            \
    return BBX_CONCAT(bbx_result_, __LINE__).error();                     \
  decl = std::move(BBX_CONCAT(bbx_result_, __LINE__)).value()
