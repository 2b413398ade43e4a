// The guest image build: reproducible (two builds give the same bytes) and holding
// what the guest needs (static /init, crun with its loader and libraries, modules in
// order). Runs guest/build-image.sh into temp dirs; _output is left alone.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

CommandResult RunShell(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

class GuestImageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/bbx-guest-image-test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  CommandResult Build(const std::string& out, const std::string& env = "") {
    return RunShell(env +
                    " " BBX_BUILD_IMAGE_SCRIPT " --vminitd " BBX_VMINITD
                    " --module-order-tool " BBX_MODULE_ORDER_TOOL " --output-dir " +
                    out);
  }
  std::string dir_;
};

TEST_F(GuestImageTest, TwoBuildsAreByteIdentical) {
  CommandResult first = Build(dir_ + "/a");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  ::sleep(1);  // different wall-clock times must not show in the image
  CommandResult second = Build(dir_ + "/b");
  ASSERT_EQ(second.exit_code, 0) << second.output;
  for (const char* file :
       {"beaconbox-initrd", "beaconbox-kernel-x86_64", "beaconbox-vmlinux-x86_64"}) {
    CommandResult a = RunShell("sha256sum < " + dir_ + "/a/" + file);
    CommandResult b = RunShell("sha256sum < " + dir_ + "/b/" + file);
    EXPECT_EQ(a.output, b.output) << file;
    EXPECT_EQ(a.output.size(), 68u) << a.output;
  }
  // A different SOURCE_DATE_EPOCH gives a different image: the mtimes do come from it.
  CommandResult third = Build(dir_ + "/c", "SOURCE_DATE_EPOCH=1000000000");
  ASSERT_EQ(third.exit_code, 0) << third.output;
  EXPECT_NE(RunShell("sha256sum < " + dir_ + "/a/beaconbox-initrd").output,
            RunShell("sha256sum < " + dir_ + "/c/beaconbox-initrd").output);
  // Nothing is left behind in the output directory but the three files (Debian's cloud
  // kernel has a PVH entry, so the vmlinux is there).
  size_t entries = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir_ + "/a")) ++entries;
  EXPECT_EQ(entries, 3u);
}

// The vmlinux is the bzImage's own kernel, uncompressed, with the PVH entry note
// (XEN_ELFNOTE_PHYS32_ENTRY, type 18) Cloud Hypervisor boots through.
TEST_F(GuestImageTest, VmlinuxIsThePvhElfOfTheSameKernel) {
  CommandResult built = Build(dir_ + "/a");
  ASSERT_EQ(built.exit_code, 0) << built.output;
  const std::string vmlinux = dir_ + "/a/beaconbox-vmlinux-x86_64";
  CommandResult notes = RunShell("readelf -nW " + vmlinux);
  ASSERT_EQ(notes.exit_code, 0) << notes.output;
  EXPECT_EQ(RunShell("readelf -nW " + vmlinux + " | grep -qE 'Xen .*\\(0x00000012\\)'").exit_code,
            0)
      << notes.output;
  // The same kernel: the vmlinux's banner names the release the image build took.
  CommandResult release = RunShell("strings " + vmlinux + " | grep -m1 '^Linux version '");
  ASSERT_EQ(release.exit_code, 0) << release.output;
  CommandResult kver = RunShell(
      "k=$(ls -1 /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n 1); printf %s "
      "${k#/boot/vmlinuz-}");
  EXPECT_NE(release.output.find("Linux version " + kver.output + " "), std::string::npos)
      << release.output << " vs " << kver.output;
}

// A file that is no bzImage is one line and no output. (The other refusal, exit 3 for
// a kernel without a PVH entry, needs such a kernel: Debian's has one.)
TEST_F(GuestImageTest, ExtractVmlinuxRefusesWhatItCannotUse) {
  const std::string script = std::string(BBX_BUILD_IMAGE_SCRIPT)
                                 .substr(0, std::string(BBX_BUILD_IMAGE_SCRIPT).rfind('/')) +
                             "/extract-vmlinux.sh";
  CommandResult not_bz = RunShell(script + " /bin/true " + dir_ + "/out 2>&1");
  EXPECT_EQ(not_bz.exit_code, 1);
  EXPECT_NE(not_bz.output.find("is not a bzImage"), std::string::npos) << not_bz.output;
  EXPECT_FALSE(fs::exists(dir_ + "/out"));
}

TEST_F(GuestImageTest, InitrdHoldsWhatTheGuestNeeds) {
  CommandResult built = Build(dir_ + "/a");
  ASSERT_EQ(built.exit_code, 0) << built.output;
  CommandResult list = RunShell("cpio -it --quiet < " + dir_ + "/a/beaconbox-initrd");
  ASSERT_EQ(list.exit_code, 0) << list.output;
  for (const char* path :
       {"\ninit\n", "\nusr/bin/crun\n", "\nlib64/ld-linux-x86-64.so.2\n",
        "\nlib/x86_64-linux-gnu/libc.so.6\n", "\nlib/x86_64-linux-gnu/libseccomp.so.2\n",
        "\netc/beaconbox/modules.order\n", "\netc/passwd\n", "/virtio_console.ko\n",
        "/virtiofs.ko\n", "/vmw_vsock_virtio_transport.ko\n"}) {
    EXPECT_NE(("\n" + list.output).find(path), std::string::npos)
        << path << " missing from the initrd";
  }
  fs::create_directories(dir_ + "/x");
  CommandResult extract =
      RunShell("cd " + dir_ +
               "/x && cpio -id --quiet init etc/beaconbox/modules.order < ../a/beaconbox-initrd");
  ASSERT_EQ(extract.exit_code, 0) << extract.output;
  CommandResult file = RunShell("file -b " + dir_ + "/x/init");
  EXPECT_NE(file.output.find("statically linked"), std::string::npos) << file.output;
  std::ifstream order(dir_ + "/x/etc/beaconbox/modules.order");
  std::stringstream text;
  text << order.rdbuf();
  // Dependencies first: virtio_ring before virtio before virtio_pci; fuse before virtiofs.
  auto at = [&](const char* name) { return text.str().find(name); };
  EXPECT_LT(at("/virtio_ring.ko"), at("/virtio.ko"));
  EXPECT_LT(at("/virtio.ko"), at("/virtio_pci.ko"));
  EXPECT_LT(at("/fuse.ko"), at("/virtiofs.ko"));
  EXPECT_LT(at("/vsock.ko"), at("/vmw_vsock_virtio_transport.ko"));
}

}  // namespace
