#include "tests/plugins/vmm-cloudhypervisor/fake_cloud_hypervisor/qemu_translation.h"

#include <algorithm>
#include <sstream>

namespace beaconbox::fakech {
namespace {

using nlohmann::json;

Error NotEmulated(const std::string& what) {
  return MakeError(ErrorCode::kNotImplemented,
                   "fake-cloud-hypervisor does not emulate " + what + " (see its README)");
}

// QEMU splits options at ','; a value carrying one would inject options.
Result<std::string> Safe(const json& value, const std::string& field) {
  if (!value.is_string() || value.get<std::string>().empty() ||
      value.get<std::string>().find(',') != std::string::npos) {
    return NotEmulated(field + " values that are empty or contain ','");
  }
  return value.get<std::string>();
}

uint64_t Mib(uint64_t bytes) { return bytes >> 20; }

}  // namespace

unsigned AgentVsockPortOf(const json& vm_config) {
  const std::string cmdline = vm_config["payload"].value("cmdline", "");
  const std::string key = "beaconbox.channel=vsock:";
  unsigned port = 0;
  std::istringstream words(cmdline);
  std::string word;
  while (words >> word) {
    if (word.rfind(key, 0) == 0)
      port = static_cast<unsigned>(std::stoul("0" + word.substr(key.size())));
  }
  return port;
}

Result<std::vector<std::string>> QemuArgvOf(const json& config, const std::string& qemu_binary,
                                            const QemuPaths& paths) {
  const json& payload = config["payload"];
  if (payload.contains("firmware") || payload.contains("igvm")) {
    return NotEmulated("firmware or IGVM boot (only a direct kernel boot)");
  }
  if (!payload.contains("kernel")) return NotEmulated("a payload without a kernel");
  const json cpus = config.value("cpus", json{{"boot_vcpus", 1}, {"max_vcpus", 1}});
  const json memory = config.value("memory", json{{"size", uint64_t{512} << 20}});
  const uint64_t size_mib = std::max<uint64_t>(Mib(memory["size"].get<uint64_t>()), 64);
  const uint64_t hotplug_mib = Mib(memory.value("hotplug_size", uint64_t{0}));
  std::string memory_arg = std::to_string(size_mib) + "M";
  if (hotplug_mib > 0) {
    memory_arg += ",slots=8,maxmem=" + std::to_string(size_mib + hotplug_mib) + "M";
  }
  BBX_ASSIGN_OR_RETURN(std::string kernel, Safe(payload["kernel"], "payload.kernel"));
  std::string cmdline = payload.value("cmdline", "");
  // clang-format off
  std::vector<std::string> argv = {
      qemu_binary, "-name", "fake-cloud-hypervisor",
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      "-accel", "tcg", "-M", "q35", "-cpu", "max",
      "-smp", std::to_string(cpus["boot_vcpus"].get<uint64_t>()) + ",maxcpus=" +
                  std::to_string(cpus["max_vcpus"].get<uint64_t>()),
      "-m", memory_arg,
      "-kernel", kernel,
      "-qmp", "unix:" + paths.qmp_socket + ",server=on,wait=off",
  };
  // clang-format on
  // vhost-user devices need guest memory virtiofsd can map, as CH's shared=on gives.
  if (memory.value("shared", false)) {
    argv.insert(
        argv.end(),
        {"-object", "memory-backend-memfd,id=mem,size=" + std::to_string(size_mib) + "M,share=on",
         "-numa", "node,memdev=mem"});
  } else if (config.contains("fs")) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "virtio-fs needs shared memory: set memory.shared (as CH requires)");
  }
  if (payload.contains("initramfs")) {
    BBX_ASSIGN_OR_RETURN(std::string initrd, Safe(payload["initramfs"], "payload.initramfs"));
    argv.insert(argv.end(), {"-initrd", initrd});
  }
  const json serial = config.value("serial", json{{"mode", "Null"}});
  if (serial["mode"] == "File") {
    BBX_ASSIGN_OR_RETURN(std::string file, Safe(serial.value("file", json()), "serial.file"));
    argv.insert(argv.end(), {"-serial", "file:" + file});
  } else if (serial["mode"] != "Off" && serial["mode"] != "Null") {
    return NotEmulated("serial mode " + serial["mode"].get<std::string>());
  }
  if (config.contains("console") && config["console"]["mode"] != "Off" &&
      config["console"]["mode"] != "Null") {
    return NotEmulated("a virtio-console other than Off or Null");
  }
  if (config.contains("vsock")) {
    // The guest agent speaks over a virtio-serial port instead; the double relays
    // the hybrid vsock socket to it (see main).
    cmdline += std::string(" beaconbox.channel=virtio-serial:") + kAgentPortName;
    argv.insert(argv.end(),
                {"-device", "virtio-serial-pci,id=serial0", "-chardev",
                 "socket,id=agent,path=" + paths.agent_socket + ",server=on,wait=off", "-device",
                 std::string("virtserialport,chardev=agent,name=") + kAgentPortName});
  }
  argv.insert(argv.end(), {"-append", cmdline});
  if (payload.contains("fw_cfg_config") && payload["fw_cfg_config"].contains("items")) {
    for (const auto& item : payload["fw_cfg_config"]["items"].value("item_list", json::array())) {
      BBX_ASSIGN_OR_RETURN(std::string name, Safe(item.value("name", json()), "fw_cfg item name"));
      if (item.contains("file") == item.contains("string")) {
        return MakeError(ErrorCode::kInvalidArgument,
                         "fw_cfg item " + name + ": give exactly one of file and string");
      }
      if (item.contains("file")) {
        BBX_ASSIGN_OR_RETURN(std::string file, Safe(item["file"], "fw_cfg item file"));
        argv.insert(argv.end(), {"-fw_cfg", "name=" + name + ",file=" + file});
      } else {
        BBX_ASSIGN_OR_RETURN(std::string text, Safe(item["string"], "fw_cfg item string"));
        argv.insert(argv.end(), {"-fw_cfg", "name=" + name + ",string=" + text});
      }
    }
  }
  size_t index = 0;
  for (const auto& disk : config.value("disks", json::array())) {
    if (disk.value("vhost_user", false)) return NotEmulated("vhost-user disks");
    BBX_ASSIGN_OR_RETURN(std::string path, Safe(disk.value("path", json()), "disks[].path"));
    std::string id = "disk" + std::to_string(index++);
    argv.insert(argv.end(), {"-drive", "file=" + path + ",if=none,id=" + id + ",format=raw" +
                                           (disk.value("readonly", false) ? ",readonly=on" : "")});
    std::string device = "virtio-blk-pci,drive=" + id;
    if (disk.contains("serial")) {
      BBX_ASSIGN_OR_RETURN(std::string serial_number, Safe(disk["serial"], "disks[].serial"));
      device += ",serial=" + serial_number;
    }
    argv.insert(argv.end(), {"-device", device});
  }
  index = 0;
  for (const auto& net : config.value("net", json::array())) {
    const bool has_fds = net.contains("fds") && net["fds"].is_array() && !net["fds"].empty();
    if (net.value("vhost_user", false) || (!net.contains("tap") && !has_fds)) {
      return NotEmulated("networks other than an existing TAP or TAP descriptors");
    }
    std::string id = "net" + std::to_string(index++);
    if (has_fds) {
      // Descriptors from vm.add-net (SCM_RIGHTS), open in QEMU across the exec: as CH,
      // they win over a tap name. One queue pair per descriptor.
      std::string numbers;
      for (const auto& fd : net["fds"]) {
        if (!fd.is_number_integer() || fd.get<int64_t>() <= 2) {
          return MakeError(ErrorCode::kInvalidArgument, "net[].fds: not received descriptors");
        }
        numbers += (numbers.empty() ? "" : ":") + std::to_string(fd.get<int64_t>());
      }
      argv.insert(argv.end(),
                  {"-netdev", "tap,id=" + id +
                                  (net["fds"].size() == 1 ? ",fd=" + numbers : ",fds=" + numbers)});
    } else {
      BBX_ASSIGN_OR_RETURN(std::string tap, Safe(net["tap"], "net[].tap"));
      argv.insert(argv.end(),
                  {"-netdev", "tap,id=" + id + ",ifname=" + tap + ",script=no,downscript=no"});
    }
    std::string device = "virtio-net-pci,netdev=" + id;
    if (net.contains("mac")) {
      BBX_ASSIGN_OR_RETURN(std::string mac, Safe(net["mac"], "net[].mac"));
      device += ",mac=" + mac;
    }
    if (net.contains("mtu")) device += ",host_mtu=" + std::to_string(net["mtu"].get<uint64_t>());
    argv.insert(argv.end(), {"-device", device});
  }
  index = 0;
  for (const auto& fs : config.value("fs", json::array())) {
    BBX_ASSIGN_OR_RETURN(std::string socket, Safe(fs["socket"], "fs[].socket"));
    BBX_ASSIGN_OR_RETURN(std::string tag, Safe(fs["tag"], "fs[].tag"));
    std::string id = "fs" + std::to_string(index++);
    argv.insert(argv.end(), {"-chardev", "socket,id=" + id + ",path=" + socket, "-device",
                             "vhost-user-fs-pci,queue-size=" +
                                 std::to_string(fs["queue_size"].get<uint64_t>()) +
                                 ",chardev=" + id + ",tag=" + tag});
  }
  for (const char* unsupported : {"pmem", "devices", "user_devices", "vdpa", "generic_vhost_user",
                                  "numa", "tpm", "balloon", "rng"}) {
    if (config.contains(unsupported)) return NotEmulated(std::string("VmConfig.") + unsupported);
  }
  return argv;
}

}  // namespace beaconbox::fakech
