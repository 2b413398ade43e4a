#include "plugins/storage-erofs/guest_image.h"

#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>

#include "common/base/errno_error.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;

struct GzCloser {
  void operator()(gzFile file) const { gzclose(file); }
};
using GzFile = std::unique_ptr<std::remove_pointer_t<gzFile>, GzCloser>;

bool ReadExactly(gzFile file, char* data, size_t size) {
  size_t done = 0;
  while (done < size) {
    const int got = gzread(file, data + done, static_cast<unsigned>(size - done));
    if (got <= 0) return false;
    done += static_cast<size_t>(got);
  }
  return true;
}

bool Skip(gzFile file, uint64_t size) {
  char buffer[65536];
  while (size > 0) {
    const size_t chunk = size < sizeof(buffer) ? size : sizeof(buffer);
    if (!ReadExactly(file, buffer, chunk)) return false;
    size -= chunk;
  }
  return true;
}

bool HexField(const char* text, uint64_t* value) {
  *value = 0;
  for (int i = 0; i < 8; ++i) {
    const char c = text[i];
    const int digit = c >= '0' && c <= '9'   ? c - '0'
                      : c >= 'a' && c <= 'f' ? c - 'a' + 10
                      : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                             : -1;
    if (digit < 0) return false;
    *value = *value << 4 | static_cast<uint64_t>(digit);
  }
  return true;
}

uint64_t Pad4(uint64_t size) { return (4 - size % 4) % 4; }

bool HasLineEndingIn(const std::string& text, const std::string& suffix) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line == suffix || line.ends_with("/" + suffix)) return true;
  }
  return false;
}

}  // namespace

Result<std::string> ReadInitrdFile(const std::string& initrd, const std::string& name,
                                   size_t max_bytes) {
  GzFile file(gzopen(initrd.c_str(), "rb"));
  if (!file) return ErrnoError("guest initrd: open", initrd);
  // newc: "070701", 13 eight-digit hex fields, the name (NUL-terminated), padding to
  // 4 bytes, the data, padding to 4; "TRAILER!!!" ends the archive.
  while (true) {
    char header[110];
    if (!ReadExactly(file.get(), header, sizeof(header)) ||
        std::string_view(header, 6) != "070701") {
      return MakeError(ErrorCode::kInvalidArgument,
                       "guest initrd " + initrd + " is not a newc cpio archive (plain or gzip'd)");
    }
    uint64_t file_size = 0, name_size = 0;
    if (!HexField(header + 54, &file_size) || !HexField(header + 94, &name_size) ||
        name_size == 0 || name_size > 4096) {
      return MakeError(ErrorCode::kInvalidArgument,
                       "guest initrd " + initrd + ": a bad cpio header");
    }
    std::string entry(name_size, '\0');
    if (!ReadExactly(file.get(), entry.data(), name_size) ||
        !Skip(file.get(), Pad4(110 + name_size))) {
      return MakeError(ErrorCode::kInvalidArgument, "guest initrd " + initrd + " is truncated");
    }
    entry.resize(name_size - 1);  // the NUL
    if (entry == "TRAILER!!!") break;
    if (entry.starts_with("./")) entry.erase(0, 2);
    if (entry == name) {
      if (file_size > max_bytes) {
        return MakeError(ErrorCode::kInvalidArgument, "guest initrd " + initrd + ": " + name +
                                                          " is larger than " +
                                                          std::to_string(max_bytes) + " bytes");
      }
      std::string data(file_size, '\0');
      if (!ReadExactly(file.get(), data.data(), file_size)) {
        return MakeError(ErrorCode::kInvalidArgument, "guest initrd " + initrd + " is truncated");
      }
      return data;
    }
    if (!Skip(file.get(), file_size + Pad4(file_size))) {
      return MakeError(ErrorCode::kInvalidArgument, "guest initrd " + initrd + " is truncated");
    }
  }
  return MakeError(ErrorCode::kNotFound, "guest initrd " + initrd + " has no " + name);
}

Result<std::string> GuestErofsSupport(const std::string& initrd) {
  auto release = ReadInitrdFile(initrd, "etc/beaconbox/kernel-release", 256);
  std::string kernel = release.ok() ? *release : std::string("unknown");
  while (!kernel.empty() && (kernel.back() == '\n' || kernel.back() == ' ')) kernel.pop_back();
  auto order = ReadInitrdFile(initrd, "etc/beaconbox/modules.order", 1 << 20);
  if (!order.ok() && order.error().code != ErrorCode::kNotFound) return order.error();
  for (const char* suffix : {"erofs.ko", "erofs.ko.xz", "erofs.ko.zst", "erofs.ko.gz"}) {
    if (order.ok() && HasLineEndingIn(*order, suffix)) {
      return "erofs module loaded at boot (guest kernel " + kernel + ")";
    }
  }
  auto builtin = ReadInitrdFile(initrd, "etc/beaconbox/builtin-modules", 1 << 16);
  if (builtin.ok() && HasLineEndingIn(*builtin, "erofs")) {
    return "erofs built into the guest kernel " + kernel;
  }
  return MakeError(ErrorCode::kNotFound,
                   "the guest image " + initrd + " (kernel " + kernel +
                       ") has no erofs module: rebuild it with guest/build-image.sh (make), or "
                       "use [storage] driver = \"virtiofs\"");
}

std::string DefaultGuestInitrd(const std::string& share_dir) {
  const std::string shared = share_dir + "/kernel/beacon-initrd";
  std::error_code error;
  if (!share_dir.empty() && fs::exists(shared, error)) return shared;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (!error) {
    const std::string beside = (self.parent_path() / "beaconbox-initrd").string();
    if (fs::exists(beside, error)) return beside;
  }
  return shared;
}

}  // namespace beaconbox::storage
