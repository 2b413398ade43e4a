// Validation of a VM checkpoint's manifest and files (host/shim/checkpoint_manifest.h):
// a checkpoint is input from outside, refused with one line before the VMM loads it.
#include "host/shim/checkpoint_manifest.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/base/file_util.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;

constexpr char kKernelDigest[] = "1111111111111111111111111111111111111111111111111111111111111111";
constexpr char kInitrdDigest[] = "2222222222222222222222222222222222222222222222222222222222222222";

class CheckpointManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/bbx-checkpoint-test.XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    host_ = {"0.15.0", kKernelDigest, kInitrdDigest, "qemu", "QEMU emulator version 7.2.22", 2048};
    WriteFile("vm.state", std::string(4096, 'x') + "device state");
    manifest_.beaconbox_version = host_.beaconbox_version;
    manifest_.kernel_sha256 = kKernelDigest;
    manifest_.initrd_sha256 = kInitrdDigest;
    manifest_.vmm = "qemu";
    manifest_.vmm_version = host_.vmm_version;
    manifest_.memory_mib = 512;
    manifest_.vcpus = 1;
    manifest_.max_vcpus = 2;
    manifest_.max_memory_mib = 2048;
    manifest_.container_namespace = "default";
    manifest_.container_id = "counter";
    manifest_.guest_container_id = "counter";
    manifest_.guest_pid = 57;
    manifest_.has_stdout = true;
    manifest_.has_stderr = true;
    auto file = DescribeCheckpointFile(dir_, "vm.state");
    ASSERT_TRUE(file.ok()) << file.error().message;
    manifest_.files.push_back(*file);
    WriteManifest(FormatCheckpointManifest(manifest_));
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteFile(const std::string& name, const std::string& data) {
    std::ofstream(dir_ + "/" + name, std::ios::binary | std::ios::trunc) << data;
  }
  void WriteManifest(const std::string& text) { WriteFile(kCheckpointManifestName, text); }

  // The one-line refusal of the directory as it is now.
  std::string Refusal() {
    auto result = ValidateCheckpointDir(dir_, host_);
    if (result.ok()) return "accepted";
    EXPECT_EQ(result.error().message.find('\n'), std::string::npos) << result.error().message;
    return result.error().message;
  }

  std::string dir_;
  CheckpointHost host_;
  CheckpointManifest manifest_;
};

TEST_F(CheckpointManifestTest, AcceptsWhatItWrote) {
  auto result = ValidateCheckpointDir(dir_, host_);
  ASSERT_TRUE(result.ok()) << result.error().message;
  EXPECT_EQ(result->memory_mib, 512u);
  ASSERT_EQ(result->files.size(), 1u);
  EXPECT_EQ(result->files[0].size, 4096u + 12u);
}

TEST_F(CheckpointManifestTest, Sha256IsTheStandardOne) {
  WriteFile("abc", "abc");
  auto digest = Sha256OfFile(dir_ + "/abc");
  ASSERT_TRUE(digest.ok());
  EXPECT_EQ(*digest, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_F(CheckpointManifestTest, RefusesATruncatedStateFile) {
  fs::resize_file(dir_ + "/vm.state", 100);
  std::string refusal = Refusal();
  EXPECT_NE(refusal.find("vm.state has 100 bytes, the manifest says 4108 (truncated)"),
            std::string::npos)
      << refusal;
}

TEST_F(CheckpointManifestTest, RefusesATruncatedManifest) {
  std::string text = FormatCheckpointManifest(manifest_);
  WriteManifest(text.substr(0, text.size() / 2));
  EXPECT_NE(Refusal().find("checkpoint refused: checkpoint manifest"), std::string::npos)
      << Refusal();
}

TEST_F(CheckpointManifestTest, RefusesAWrongDigest) {
  WriteFile("vm.state", std::string(4096, 'y') + "device state");  // same size
  std::string refusal = Refusal();
  EXPECT_NE(refusal.find("vm.state has SHA-256"), std::string::npos) << refusal;
  EXPECT_NE(refusal.find("(corrupted)"), std::string::npos) << refusal;
}

TEST_F(CheckpointManifestTest, RefusesAForeignDirectory) {
  fs::remove(dir_ + "/" + kCheckpointManifestName);
  WriteFile("descriptor.json", "{}");  // what a runc/CRIU checkpoint holds instead
  EXPECT_NE(Refusal().find("not a beaconbox checkpoint"), std::string::npos) << Refusal();
}

TEST_F(CheckpointManifestTest, RefusesAnotherFormat) {
  manifest_.format = "beaconbox-checkpoint 3";
  WriteManifest(FormatCheckpointManifest(manifest_));
  EXPECT_NE(Refusal().find("its format is 'beaconbox-checkpoint 3'"), std::string::npos)
      << Refusal();
  // Format 1 (session 16's) records no container to adopt.
  manifest_.format = "beaconbox-checkpoint 1";
  WriteManifest(FormatCheckpointManifest(manifest_));
  EXPECT_NE(Refusal().find("its format 'beaconbox-checkpoint 1' (an older beaconbox) does not "
                           "record the container to adopt; take a new checkpoint"),
            std::string::npos)
      << Refusal();
}

// Format 2's fields: what restore adopts and the VM's shape, each checked.
TEST_F(CheckpointManifestTest, RefusesBadAdoptionFieldsAndAnotherVmShape) {
  const CheckpointManifest original = manifest_;
  struct Case {
    void (*change)(CheckpointManifest&);
    const char* named;
  } cases[] = {
      {[](CheckpointManifest& m) { m.guest_container_id = "../etc"; }, "guest_container_id"},
      {[](CheckpointManifest& m) { m.guest_pid = 0; }, "its guest_pid 0 is out of range"},
      {[](CheckpointManifest& m) { m.guest_pid = 1ull << 32; }, "is out of range"},
      {[](CheckpointManifest& m) { m.vcpus = 0; }, "are out of range"},
      {[](CheckpointManifest& m) { m.guest_stream_id = 2; }, "not an odd ttrpc stream id"},
      {[](CheckpointManifest& m) { m.max_vcpus = 0; }, "are out of range"},
      {[](CheckpointManifest& m) { m.max_memory_mib = 256; }, "are out of range"},
  };
  for (const auto& c : cases) {
    manifest_ = original;
    c.change(manifest_);
    WriteManifest(FormatCheckpointManifest(manifest_));
    EXPECT_NE(Refusal().find(c.named), std::string::npos) << Refusal();
  }
  manifest_ = original;
  WriteManifest(FormatCheckpointManifest(manifest_));
  host_.compare_shape = true;  // the maxima are compared once the host gives its own
  host_.config_max_vcpus = 4;
  host_.config_max_memory_mib = 2048;
  EXPECT_NE(Refusal().find("saved with max_vcpus 2, this host's VM would have 4"),
            std::string::npos)
      << Refusal();
  host_.config_max_vcpus = 0;  // no hotplug here: max(0, 1 vCPU) = 1
  EXPECT_NE(Refusal().find("saved with max_vcpus 2, this host's VM would have 1"),
            std::string::npos)
      << Refusal();
  host_.config_max_vcpus = 2;
  host_.config_max_memory_mib = 4096;
  EXPECT_NE(Refusal().find("saved with max_memory_mib 2048, this host's VM would have 4096"),
            std::string::npos)
      << Refusal();
  host_.config_max_memory_mib = 2048;
  EXPECT_EQ(Refusal(), "accepted");
  auto parsed = ParseCheckpointManifest(FormatCheckpointManifest(manifest_));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->guest_container_id, "counter");
  EXPECT_EQ(parsed->guest_pid, 57u);
  EXPECT_FALSE(parsed->has_stdin);
  EXPECT_TRUE(parsed->has_stdout);
  // Without a known VMM version (before the VMM ran) it is not compared here.
  host_.vmm_version.clear();
  EXPECT_EQ(Refusal(), "accepted");
}

TEST_F(CheckpointManifestTest, NamesEachHostMismatch) {
  struct Case {
    void (*change)(CheckpointHost&);
    const char* named;
  } cases[] = {
      {[](CheckpointHost& h) { h.beaconbox_version = "0.16.0"; }, "the beaconbox version differs"},
      {[](CheckpointHost& h) { h.vmm = "cloud-hypervisor"; }, "the VMM differs"},
      {[](CheckpointHost& h) { h.vmm_version = "QEMU emulator version 8.2.0"; },
       "the VMM version differs"},
      {[](CheckpointHost& h) { h.kernel_sha256.assign(64, '3'); }, "the kernel (SHA-256) differs"},
      {[](CheckpointHost& h) { h.initrd_sha256.assign(64, '4'); }, "the initrd (SHA-256) differs"},
      {[](CheckpointHost& h) { h.max_memory_mib = 256; }, "above this host's vm.max_memory_mib"},
  };
  const CheckpointHost original = host_;
  for (const auto& c : cases) {
    host_ = original;
    c.change(host_);
    EXPECT_NE(Refusal().find(c.named), std::string::npos) << Refusal();
  }
}

TEST_F(CheckpointManifestTest, RefusesAnOversizedManifestWithoutParsing) {
  WriteManifest(std::string(kMaxCheckpointManifestBytes + 1, ' '));
  EXPECT_NE(Refusal().find("manifest is larger than 65536 bytes"), std::string::npos) << Refusal();
}

TEST_F(CheckpointManifestTest, RefusesAFileListedLargerThanTheGuestCanNeed) {
  manifest_.memory_mib = 64;
  manifest_.files[0].size = (64ull << 20) + kCheckpointStateSlackBytes + 1;
  WriteManifest(FormatCheckpointManifest(manifest_));
  EXPECT_NE(Refusal().find("more than a 64 MiB guest can need"), std::string::npos) << Refusal();
}

TEST_F(CheckpointManifestTest, RefusesNamesThatLeaveTheDirectory) {
  for (const char* name :
       {"../vm.state", "/etc/passwd", "..", "a/b", "beaconbox-checkpoint.json"}) {
    manifest_.files[0].name = name;
    WriteManifest(FormatCheckpointManifest(manifest_));
    EXPECT_NE(Refusal().find("not a plain name"), std::string::npos) << name << ": " << Refusal();
  }
}

TEST_F(CheckpointManifestTest, RefusesASymlinkedStateFile) {
  fs::rename(dir_ + "/vm.state", dir_ + "/elsewhere");
  fs::create_symlink(dir_ + "/elsewhere", dir_ + "/vm.state");
  EXPECT_NE(Refusal().find("vm.state cannot be opened"), std::string::npos) << Refusal();
}

TEST_F(CheckpointManifestTest, RefusesMalformedFields) {
  const std::string texts[] = {
      "[]",
      R"({"format":"beaconbox-checkpoint 1"})",
      R"({"format":"beaconbox-checkpoint 1","beaconbox_version":"x","kernel_sha256":"zz"})",
      "{\"format\":\"beaconbox-checkpoint 1\",\"beaconbox_version\":\"x\",\"kernel_sha256\":\"" +
          std::string(kKernelDigest) + "\",\"initrd_sha256\":\"" + kInitrdDigest +
          "\",\"vmm\":\"qemu\",\"vmm_version\":\"v\",\"memory_mib\":-1,\"files\":[]}",
  };
  for (const std::string& text : texts) {
    auto result = ParseCheckpointManifest(text);
    ASSERT_FALSE(result.ok()) << text;
    EXPECT_EQ(result.error().message.rfind("checkpoint refused: ", 0), 0u)
        << result.error().message;
  }
}

}  // namespace
}  // namespace beaconbox::shim
