#include "host/shim/checkpoint_manifest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "common/base/bounded_json.h"
#include "common/base/errno_error.h"
#include "common/base/file_util.h"
#include "common/base/unique_fd.h"

namespace beaconbox::shim {
namespace {

constexpr uint64_t kMaxMemoryMib = 1ull << 24;  // 16 TiB: past any VM, short of overflow
constexpr size_t kMaxFieldBytes = 512;
constexpr uint64_t kMaxVcpus = 1024;

Error Refuse(const std::string& what) {
  return MakeError(ErrorCode::kInvalidArgument,
                   "checkpoint refused: " + what +
                       "; restore it on a host with the same beaconbox, kernel, initrd and VMM, "
                       "or take a new checkpoint");
}

bool IsHexDigest(const std::string& text) {
  return text.size() == 64 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool IsPlainName(const std::string& name) {
  return !name.empty() && name.size() <= 64 && name != "." && name != ".." &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
         });
}

// containerd's identifier rule allows 76 characters of these.
bool IsContainerId(const std::string& id) {
  return !id.empty() && id.size() <= 76 && id != "." && id != ".." &&
         std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
         });
}

struct DigestDeleter {
  void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};

// SHA-256 of what is read from `fd` (at most `limit` bytes, else an error).
Result<std::string> Sha256OfFd(int fd, const std::string& path, uint64_t limit) {
  std::unique_ptr<EVP_MD_CTX, DigestDeleter> context(EVP_MD_CTX_new());
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    return MakeError(ErrorCode::kInternal, "OpenSSL could not start a SHA-256 digest");
  }
  std::vector<unsigned char> buffer(1 << 20);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read", path);
    if (n == 0) break;
    total += static_cast<uint64_t>(n);
    if (total > limit) {
      return MakeError(ErrorCode::kExhausted,
                       path + " grew past " + std::to_string(limit) + " bytes while being read");
    }
    EVP_DigestUpdate(context.get(), buffer.data(), static_cast<size_t>(n));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context.get(), digest, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 0xf];
  }
  return hex;
}

Result<std::string> StringField(const nlohmann::json& json, const char* key) {
  auto it = json.find(key);
  if (it == json.end() || !it->is_string()) {
    return Refuse(std::string("its manifest has no string \"") + key + "\"");
  }
  std::string value = it->get<std::string>();
  if (value.empty() || value.size() > kMaxFieldBytes) {
    return Refuse(std::string("its manifest's \"") + key + "\" is empty or longer than " +
                  std::to_string(kMaxFieldBytes) + " bytes");
  }
  return value;
}

Result<uint64_t> NumberField(const nlohmann::json& json, const char* key) {
  auto it = json.find(key);
  if (it == json.end() || !it->is_number_unsigned()) {
    return Refuse(std::string("its manifest has no unsigned number \"") + key + "\"");
  }
  return it->get<uint64_t>();
}

Result<bool> BoolField(const nlohmann::json& json, const char* key) {
  auto it = json.find(key);
  if (it == json.end() || !it->is_boolean()) {
    return Refuse(std::string("its manifest has no true/false \"") + key + "\"");
  }
  return it->get<bool>();
}

Result<std::string> DigestField(const nlohmann::json& json, const char* key) {
  BBX_ASSIGN_OR_RETURN(std::string value, StringField(json, key));
  if (!IsHexDigest(value)) {
    return Refuse(std::string("its manifest's \"") + key + "\" is not a SHA-256 in hex");
  }
  return value;
}

Status Same(const char* what, const std::string& saved, const std::string& here) {
  if (saved == here) return Status::Ok();
  return Refuse(std::string(what) + " differs: the checkpoint has '" + PrintableOneLine(saved) +
                "', this host '" + here + "'");
}

}  // namespace

std::string FormatCheckpointManifest(const CheckpointManifest& manifest) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& file : manifest.files) {
    files.push_back({{"name", file.name}, {"size", file.size}, {"sha256", file.sha256}});
  }
  nlohmann::json json = {{"format", manifest.format},
                         {"beaconbox_version", manifest.beaconbox_version},
                         {"kernel_sha256", manifest.kernel_sha256},
                         {"initrd_sha256", manifest.initrd_sha256},
                         {"vmm", manifest.vmm},
                         {"vmm_version", manifest.vmm_version},
                         {"memory_mib", manifest.memory_mib},
                         {"vcpus", manifest.vcpus},
                         {"max_vcpus", manifest.max_vcpus},
                         {"max_memory_mib", manifest.max_memory_mib},
                         {"namespace", manifest.container_namespace},
                         {"container_id", manifest.container_id},
                         {"guest_container_id", manifest.guest_container_id},
                         {"guest_pid", manifest.guest_pid},
                         {"guest_stream_id", manifest.guest_stream_id},
                         {"stdin", manifest.has_stdin},
                         {"stdout", manifest.has_stdout},
                         {"stderr", manifest.has_stderr},
                         {"terminal", manifest.terminal},
                         {"files", files}};
  return json.dump(2) + "\n";
}

Result<CheckpointManifest> ParseCheckpointManifest(std::string_view text) {
  if (text.size() > kMaxCheckpointManifestBytes) {
    return Refuse("its manifest is larger than " + std::to_string(kMaxCheckpointManifestBytes) +
                  " bytes");
  }
  auto parsed =
      ParseBoundedJson(text, "checkpoint manifest", JsonLimits{8, kMaxCheckpointManifestBytes});
  if (!parsed.ok()) return Refuse(parsed.error().message);
  const nlohmann::json& json = *parsed;
  if (!json.is_object()) return Refuse("its manifest is not a JSON object");
  CheckpointManifest manifest;
  BBX_ASSIGN_OR_RETURN(manifest.format, StringField(json, "format"));
  if (manifest.format == "beaconbox-checkpoint 1") {
    return MakeError(ErrorCode::kInvalidArgument,
                     "checkpoint refused: its format 'beaconbox-checkpoint 1' (an older beaconbox) "
                     "does not record the container to adopt; take a new checkpoint with this "
                     "beaconbox");
  }
  if (manifest.format != kCheckpointFormat) {
    return Refuse("its format is '" + PrintableOneLine(manifest.format) + "', this shim reads '" +
                  kCheckpointFormat + "'");
  }
  BBX_ASSIGN_OR_RETURN(manifest.beaconbox_version, StringField(json, "beaconbox_version"));
  BBX_ASSIGN_OR_RETURN(manifest.kernel_sha256, DigestField(json, "kernel_sha256"));
  BBX_ASSIGN_OR_RETURN(manifest.initrd_sha256, DigestField(json, "initrd_sha256"));
  BBX_ASSIGN_OR_RETURN(manifest.vmm, StringField(json, "vmm"));
  BBX_ASSIGN_OR_RETURN(manifest.vmm_version, StringField(json, "vmm_version"));
  BBX_ASSIGN_OR_RETURN(manifest.memory_mib, NumberField(json, "memory_mib"));
  if (manifest.memory_mib == 0 || manifest.memory_mib > kMaxMemoryMib) {
    return Refuse("its memory_mib " + std::to_string(manifest.memory_mib) + " is out of range");
  }
  BBX_ASSIGN_OR_RETURN(manifest.vcpus, NumberField(json, "vcpus"));
  BBX_ASSIGN_OR_RETURN(manifest.max_vcpus, NumberField(json, "max_vcpus"));
  BBX_ASSIGN_OR_RETURN(manifest.max_memory_mib, NumberField(json, "max_memory_mib"));
  if (manifest.vcpus == 0 || manifest.vcpus > kMaxVcpus || manifest.max_vcpus < manifest.vcpus ||
      manifest.max_vcpus > kMaxVcpus || manifest.max_memory_mib < manifest.memory_mib ||
      manifest.max_memory_mib > kMaxMemoryMib) {
    return Refuse("its vcpus " + std::to_string(manifest.vcpus) + " / max_vcpus " +
                  std::to_string(manifest.max_vcpus) + " / max_memory_mib " +
                  std::to_string(manifest.max_memory_mib) + " are out of range");
  }
  BBX_ASSIGN_OR_RETURN(manifest.container_namespace, StringField(json, "namespace"));
  BBX_ASSIGN_OR_RETURN(manifest.container_id, StringField(json, "container_id"));
  BBX_ASSIGN_OR_RETURN(manifest.guest_container_id, StringField(json, "guest_container_id"));
  if (!IsContainerId(manifest.guest_container_id)) {
    return Refuse("its guest_container_id '" + PrintableOneLine(manifest.guest_container_id) +
                  "' is not a plain name of letters, digits, '.', '_' and '-'");
  }
  BBX_ASSIGN_OR_RETURN(manifest.guest_pid, NumberField(json, "guest_pid"));
  if (manifest.guest_pid == 0 || manifest.guest_pid > UINT32_MAX) {
    return Refuse("its guest_pid " + std::to_string(manifest.guest_pid) + " is out of range");
  }
  BBX_ASSIGN_OR_RETURN(manifest.guest_stream_id, NumberField(json, "guest_stream_id"));
  if (manifest.guest_stream_id % 2 == 0 || manifest.guest_stream_id >= UINT32_MAX - 2) {
    return Refuse("its guest_stream_id " + std::to_string(manifest.guest_stream_id) +
                  " is not an odd ttrpc stream id");
  }
  BBX_ASSIGN_OR_RETURN(manifest.has_stdin, BoolField(json, "stdin"));
  BBX_ASSIGN_OR_RETURN(manifest.has_stdout, BoolField(json, "stdout"));
  BBX_ASSIGN_OR_RETURN(manifest.has_stderr, BoolField(json, "stderr"));
  BBX_ASSIGN_OR_RETURN(manifest.terminal, BoolField(json, "terminal"));
  auto files = json.find("files");
  if (files == json.end() || !files->is_array() || files->empty() ||
      files->size() > kMaxCheckpointFiles) {
    return Refuse("its manifest must list 1 to " + std::to_string(kMaxCheckpointFiles) + " files");
  }
  std::set<std::string> names;
  for (const auto& entry : *files) {
    if (!entry.is_object()) return Refuse("a file entry of its manifest is not an object");
    CheckpointFile file;
    BBX_ASSIGN_OR_RETURN(file.name, StringField(entry, "name"));
    if (!IsPlainName(file.name) || file.name == kCheckpointManifestName) {
      return Refuse("its manifest lists the file '" + PrintableOneLine(file.name) +
                    "', not a plain name of letters, digits, '.', '_' and '-'");
    }
    if (!names.insert(file.name).second) {
      return Refuse("its manifest lists '" + file.name + "' twice");
    }
    BBX_ASSIGN_OR_RETURN(file.size, NumberField(entry, "size"));
    BBX_ASSIGN_OR_RETURN(file.sha256, DigestField(entry, "sha256"));
    manifest.files.push_back(std::move(file));
  }
  return manifest;
}

Status CheckCheckpointHost(const CheckpointManifest& manifest, const CheckpointHost& host) {
  BBX_RETURN_IF_ERROR(
      Same("the beaconbox version", manifest.beaconbox_version, host.beaconbox_version));
  BBX_RETURN_IF_ERROR(Same("the VMM", manifest.vmm, host.vmm));
  // Known only from a VMM that ran: else the plugin compares (VmSpec.restore_vmm_version).
  if (!host.vmm_version.empty()) {
    BBX_RETURN_IF_ERROR(Same("the VMM version", manifest.vmm_version, host.vmm_version));
  }
  BBX_RETURN_IF_ERROR(Same("the kernel (SHA-256)", manifest.kernel_sha256, host.kernel_sha256));
  BBX_RETURN_IF_ERROR(Same("the initrd (SHA-256)", manifest.initrd_sha256, host.initrd_sha256));
  if (manifest.memory_mib > host.max_memory_mib) {
    return Refuse("its guest memory " + std::to_string(manifest.memory_mib) +
                  " MiB is above this host's vm.max_memory_mib " +
                  std::to_string(host.max_memory_mib));
  }
  if (!host.compare_shape) return Status::Ok();
  const uint64_t max_vcpus = std::max(host.config_max_vcpus, manifest.vcpus);
  const uint64_t max_memory_mib = std::max(host.config_max_memory_mib, manifest.memory_mib);
  if (manifest.max_vcpus != max_vcpus) {
    return Refuse("its VM was saved with max_vcpus " + std::to_string(manifest.max_vcpus) +
                  ", this host's VM would have " + std::to_string(max_vcpus) +
                  " (config key vm.max_vcpus)");
  }
  if (manifest.max_memory_mib != max_memory_mib) {
    return Refuse("its VM was saved with max_memory_mib " +
                  std::to_string(manifest.max_memory_mib) + ", this host's VM would have " +
                  std::to_string(max_memory_mib) + " (config key vm.max_memory_mib)");
  }
  return Status::Ok();
}

Status VerifyCheckpointFiles(const CheckpointManifest& manifest, const std::string& dir) {
  const uint64_t limit = manifest.memory_mib * (1ull << 20) + kCheckpointStateSlackBytes;
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) return Refuse(ErrnoError("open", dir).message);
  // Sizes first (cheap), digests after: a truncated file is named without reading it.
  std::vector<UniqueFd> fds;
  for (const auto& file : manifest.files) {
    if (file.size > limit) {
      return Refuse("its file " + file.name + " is listed with " + std::to_string(file.size) +
                    " bytes, more than a " + std::to_string(manifest.memory_mib) +
                    " MiB guest can need");
    }
    UniqueFd fd(::openat(dir_fd.get(), file.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return Refuse("its file " + file.name + " cannot be opened: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      return Refuse("its file " + file.name + " is not a regular file");
    }
    if (static_cast<uint64_t>(st.st_size) != file.size) {
      return Refuse("its file " + file.name + " has " + std::to_string(st.st_size) +
                    " bytes, the manifest says " + std::to_string(file.size) +
                    (static_cast<uint64_t>(st.st_size) < file.size ? " (truncated)" : ""));
    }
    fds.push_back(std::move(fd));
  }
  for (size_t i = 0; i < manifest.files.size(); ++i) {
    const auto& file = manifest.files[i];
    auto digest = Sha256OfFd(fds[i].get(), dir + "/" + file.name, file.size);
    if (!digest.ok()) return Refuse(digest.error().message);
    if (*digest != file.sha256) {
      return Refuse("its file " + file.name + " has SHA-256 " + *digest + ", the manifest says " +
                    file.sha256 + " (corrupted)");
    }
  }
  return Status::Ok();
}

Result<CheckpointManifest> ValidateCheckpointDir(const std::string& dir,
                                                 const CheckpointHost& host) {
  const std::string path = dir + "/" + kCheckpointManifestName;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    return Refuse("no readable " + std::string(kCheckpointManifestName) + " in " + dir +
                  " (not a beaconbox checkpoint?)");
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Refuse(ErrnoError("read", path).message);
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > kMaxCheckpointManifestBytes) {
      return Refuse("its manifest is larger than " + std::to_string(kMaxCheckpointManifestBytes) +
                    " bytes");
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  BBX_ASSIGN_OR_RETURN(CheckpointManifest manifest, ParseCheckpointManifest(text));
  BBX_RETURN_IF_ERROR(CheckCheckpointHost(manifest, host));
  BBX_RETURN_IF_ERROR(VerifyCheckpointFiles(manifest, dir));
  return manifest;
}

Result<std::string> Sha256OfFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoError("open", path);
  return Sha256OfFd(fd.get(), path, UINT64_MAX);
}

Result<CheckpointFile> DescribeCheckpointFile(const std::string& dir, const std::string& name) {
  if (!IsPlainName(name)) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "checkpoint file name '" + name + "' is not plain");
  }
  CheckpointFile file;
  file.name = name;
  const std::string path = dir + "/" + name;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return ErrnoError("stat", path);
  file.size = static_cast<uint64_t>(st.st_size);
  BBX_ASSIGN_OR_RETURN(file.sha256, Sha256OfFile(path));
  return file;
}

}  // namespace beaconbox::shim
