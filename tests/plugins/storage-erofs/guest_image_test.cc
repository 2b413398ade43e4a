// The guest's erofs support, read from a guest initrd (gzip'd newc cpio) the test
// builds with cpio and gzip, laid out as guest/build-image.sh lays it out.
#include "plugins/storage-erofs/guest_image.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/plugins/common/temp_dir.h"

namespace beaconbox::storage {
namespace {

namespace fs = std::filesystem;
using plugins::testing::TempDir;

// An initrd holding `files` (path inside -> contents), made with cpio -H newc | gzip, or
// an uncompressed cpio as guest/build-image.sh makes it (it unpacks faster).
std::string MakeInitrd(const TempDir& dir, const std::string& name,
                       const std::vector<std::pair<std::string, std::string>>& files,
                       bool gzip = true) {
  const std::string root = dir / (name + ".root");
  for (const auto& [path, text] : files) {
    fs::create_directories(fs::path(root + "/" + path).parent_path());
    std::ofstream(root + "/" + path) << text;
  }
  fs::create_directories(root + "/bin");
  std::ofstream(root + "/bin/padding") << std::string(12345, 'p');  // odd sizes: padding
  const std::string initrd = dir / name;
  const std::string command = "cd " + root +
                              " && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet" +
                              (gzip ? " | gzip -n > " : " > ") + initrd;
  EXPECT_EQ(::system(command.c_str()), 0);
  return initrd;
}

bool HaveCpio() { return ::access("/usr/bin/cpio", X_OK) == 0 || ::access("/bin/cpio", X_OK) == 0; }

TEST(GuestImageTest, ReportsTheErofsModuleOrABuiltInErofs) {
  if (!HaveCpio()) GTEST_SKIP() << "cpio not installed";
  TempDir dir;
  const std::string with_module =
      MakeInitrd(dir, "module.img",
                 {{"etc/beaconbox/kernel-release", "6.1.0-test\n"},
                  {"etc/beaconbox/modules.order",
                   "/lib/modules/6.1.0-test/kernel/fs/overlayfs/overlay.ko\n"
                   "/lib/modules/6.1.0-test/kernel/fs/erofs/erofs.ko\n"}});
  auto found = GuestErofsSupport(with_module);
  ASSERT_TRUE(found.ok()) << found.error().message;
  EXPECT_EQ(*found, "erofs module loaded at boot (guest kernel 6.1.0-test)");
  auto release = ReadInitrdFile(with_module, "etc/beaconbox/kernel-release", 64);
  ASSERT_TRUE(release.ok());
  EXPECT_EQ(*release, "6.1.0-test\n");
  EXPECT_FALSE(ReadInitrdFile(with_module, "etc/beaconbox/modules.order", 10).ok());  // bound

  const std::string plain = MakeInitrd(
      dir, "plain.img",
      {{"etc/beaconbox/kernel-release", "6.1.0-plain\n"},
       {"etc/beaconbox/modules.order", "/lib/modules/6.1.0-plain/kernel/fs/erofs/erofs.ko\n"}},
      /*gzip=*/false);
  auto plain_found = GuestErofsSupport(plain);
  ASSERT_TRUE(plain_found.ok()) << plain_found.error().message;
  EXPECT_EQ(*plain_found, "erofs module loaded at boot (guest kernel 6.1.0-plain)");

  const std::string builtin =
      MakeInitrd(dir, "builtin.img",
                 {{"etc/beaconbox/kernel-release", "6.9\n"},
                  {"etc/beaconbox/modules.order", "/lib/modules/6.9/kernel/fs/fuse/fuse.ko\n"},
                  {"etc/beaconbox/builtin-modules", "overlay\nerofs\n"}});
  auto built_in = GuestErofsSupport(builtin);
  ASSERT_TRUE(built_in.ok()) << built_in.error().message;
  EXPECT_EQ(*built_in, "erofs built into the guest kernel 6.9");
}

TEST(GuestImageTest, NoErofsOrNoInitrdIsOneLineSayingWhatToDo) {
  if (!HaveCpio()) GTEST_SKIP() << "cpio not installed";
  TempDir dir;
  const std::string without = MakeInitrd(
      dir, "none.img",
      {{"etc/beaconbox/kernel-release", "6.1\n"},
       {"etc/beaconbox/modules.order", "/lib/modules/6.1/kernel/fs/notErofs/xerofs.ko.bak\n"}});
  auto missing = GuestErofsSupport(without);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("has no erofs module: rebuild it"), std::string::npos)
      << missing.error().message;
  EXPECT_EQ(missing.error().message.find('\n'), std::string::npos);

  auto absent = GuestErofsSupport(dir / "no-such-initrd");
  ASSERT_FALSE(absent.ok());
  EXPECT_NE(absent.error().message.find(dir / "no-such-initrd"), std::string::npos);
  const std::string junk = dir.Write("junk.img", std::string(300, 'x'));
  auto not_cpio = GuestErofsSupport(junk);
  ASSERT_FALSE(not_cpio.ok());
  EXPECT_NE(not_cpio.error().message.find("is not a newc cpio archive"), std::string::npos);
}

TEST(GuestImageTest, TheBuiltGuestImageHasErofs) {
  const char* output = ::getenv("BEACONBOX_OUTPUT_DIR");
  if (output == nullptr) GTEST_SKIP() << "BEACONBOX_OUTPUT_DIR not set (run under ctest)";
  const std::string initrd = std::string(output) + "/beaconbox-initrd";
  if (::access(initrd.c_str(), R_OK) != 0) GTEST_SKIP() << initrd << " not built";
  auto support = GuestErofsSupport(initrd);
  ASSERT_TRUE(support.ok()) << support.error().message;
  EXPECT_NE(support->find("erofs"), std::string::npos);
}

}  // namespace
}  // namespace beaconbox::storage
