// Small file mechanisms every part of beaconbox needs, written once: an atomic file
// write that survives a crash (temp + fsync + rename + fsync of the directory), a
// bounded read and the printable tail of a log. Header-only and POSIX-only, so that
// the static guest agent links it as well as the host.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <string_view>

#include "common/base/errno_error.h"
#include "common/base/result.h"
#include "common/base/unique_fd.h"

namespace beaconbox {

// Replaces `path` with `data` so that a reader (or a crash at any point) sees either
// the old file or the new one, never a part: writes `path`.tmp.<pid>.<n>, fsyncs it,
// renames it over `path` and fsyncs the directory so that the rename itself is
// durable. The temporary name is the writer's own, so that concurrent writers of one
// path (two shims caching the same verdict) never write into each other's file.
inline Status WriteFileAtomic(const std::string& path, std::string_view data,
                              unsigned mode = 0644) {
  static std::atomic<unsigned> writes{0};
  const std::string temp = path + ".tmp." + std::to_string(::getpid()) + "." +
                           std::to_string(writes.fetch_add(1, std::memory_order_relaxed));
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return ErrnoError("create", temp);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Error error = ErrnoError("write", temp);
      ::unlink(temp.c_str());
      return error;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    Error error = ErrnoError("fsync", temp);
    ::unlink(temp.c_str());
    return error;
  }
  fd.Reset();
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    Error error = ErrnoError("rename to", path);
    ::unlink(temp.c_str());
    return error;
  }
  const size_t slash = path.rfind('/');
  const std::string directory =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  UniqueFd dir_fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd) (void)::fsync(dir_fd.get());
  return Status::Ok();
}

// Reads the open file `fd` from its current offset to the end, at most `limit` bytes;
// more is kExhausted, so an untrusted file never makes the reader allocate without
// bound. `path` names it in errors.
inline Result<std::string> ReadSmallFd(int fd, const std::string& path, size_t limit = 1 << 20) {
  std::string data;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read", path);
    if (n == 0) break;
    if (data.size() + static_cast<size_t>(n) > limit) {
      return MakeError(ErrorCode::kExhausted,
                       path + " is larger than " + std::to_string(limit) + " bytes");
    }
    data.append(buffer, static_cast<size_t>(n));
  }
  return data;
}

// Reads a whole file of at most `limit` bytes (ReadSmallFd).
inline Result<std::string> ReadSmallFile(const std::string& path, size_t limit = 1 << 20) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError("open", path);
  return ReadSmallFd(fd.get(), path, limit);
}

// The last `max_bytes` of a file as they are (for a caller that shows them raw or
// sanitizes them its own way). An error when the file cannot be opened.
inline Result<std::string> ReadFileTailBytes(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError("open", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("stat", path);
  const off_t size = st.st_size;
  const off_t start =
      size > static_cast<off_t>(max_bytes) ? size - static_cast<off_t>(max_bytes) : 0;
  std::string tail(static_cast<size_t>(size - start), '\0');
  size_t done = 0;
  while (done < tail.size()) {
    ssize_t n =
        ::pread(fd.get(), tail.data() + done, tail.size() - done, start + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  tail.resize(done);
  return tail;
}

// `text` made printable in place for a one-line message: newlines become '|', other
// control or non-ASCII bytes '?'. Guest and helper output is untrusted.
inline std::string PrintableOneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') {
      c = '|';
    } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
      c = '?';
    }
  }
  return text;
}

// The last `max_bytes` of a log file (a VM console, a helper's stderr) as one printable
// line (PrintableOneLine) for an error message; "" when the file cannot be read.
inline std::string ReadFileTail(const std::string& path, size_t max_bytes) {
  auto tail = ReadFileTailBytes(path, max_bytes);
  return tail.ok() ? PrintableOneLine(std::move(tail).value()) : std::string();
}

}  // namespace beaconbox
