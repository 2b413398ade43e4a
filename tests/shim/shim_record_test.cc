// The shim record and the sweep of dead shims (shim_record.h): real files, real
// sockets and real processes (a reaped child is a dead shim; this test process is a
// live one), a recording teardown in place of the plugins.
#include "host/shim/shim_record.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "common/base/process_start_time.h"
#include "common/base/unique_fd.h"

namespace beaconbox::shim {
namespace {

namespace fs = std::filesystem;

// A pid that ran and is gone: a child that exited and was reaped.
int64_t DeadPid() {
  pid_t pid = ::fork();
  if (pid == 0) _exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

class ShimRecordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/bbx-shimrec-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
    layout_ =
        RuntimeLayout(root_ + "/run", root_ + "/log", std::chrono::seconds(60), root_ + "/state");
    fs::create_directories(layout_.ShimSocketDir());
    previous_logger_ = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>(
        "test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_));
    logger->set_pattern("%l %v");
    spdlog::set_default_logger(logger);
  }
  void TearDown() override {
    spdlog::set_default_logger(previous_logger_);
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }

  ShimRecord RecordOf(const std::string& id, int64_t pid, uint64_t start_time) {
    ShimRecord record;
    record.key = {"default", id};
    record.shim_pid = pid;
    record.shim_start_time = start_time;
    record.config_path = "/etc/beaconbox/config.toml";
    record.socket_path = layout_.ShimSocketDir() + "/" + id + ".sock";
    record.bundle = root_ + "/bundles/" + id;
    return record;
  }
  std::string Save(const ShimRecord& record) {
    const std::string path = layout_.ShimRecordPath(record.key);
    EXPECT_TRUE(SaveShimRecord(path, record).ok());
    return path;
  }
  UniqueFd BoundSocket(const std::string& path) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    return fd;
  }
  // A socket file nobody listens on, as a killed shim leaves it.
  void LeaveSocket(const std::string& path) { BoundSocket(path); }
  // A socket something listens on, as a serving shim has it.
  UniqueFd ListenOn(const std::string& path) {
    UniqueFd fd = BoundSocket(path);
    EXPECT_EQ(::listen(fd.get(), 4), 0);
    return fd;
  }
  DeadShimRelease Release() {
    DeadShimRelease release;
    release.record_dir = layout_.ShimRecordDir();
    release.socket_dir = layout_.ShimSocketDir();
    release.teardown = [this](const ShimRecord& record) {
      torn_down_.push_back(record);
      return Status::Ok();
    };
    return release;
  }
  // A sweep releases `dead`: its teardown runs with its record, its socket (which
  // nobody listens on) and its record go.
  void ExpectSwept(const ShimRecord& dead) {
    const std::string path = Save(dead);
    LeaveSocket(dead.socket_path);
    const SweepReport report = SweepDeadShims(Release(), {"default", "starting"});
    EXPECT_EQ(report.released, 1u);
    ASSERT_EQ(torn_down_.size(), 1u);
    EXPECT_EQ(torn_down_[0].key, dead.key);
    EXPECT_EQ(torn_down_[0].shim_pid, dead.shim_pid);
    EXPECT_EQ(torn_down_[0].bundle, dead.bundle);
    EXPECT_FALSE(fs::exists(dead.socket_path));
    EXPECT_FALSE(fs::exists(path));
  }
  size_t CountLines(const std::string& level) {
    std::istringstream lines(log_.str());
    size_t count = 0;
    for (std::string line; std::getline(lines, line);) count += line.starts_with(level + " ");
    return count;
  }

  std::string root_;
  RuntimeLayout layout_{"/nonexistent", "/nonexistent"};
  std::vector<ShimRecord> torn_down_;
  std::ostringstream log_;
  std::shared_ptr<spdlog::logger> previous_logger_;
};

TEST_F(ShimRecordTest, LivesUnderTheStateDirKeyedByNamespaceAndId) {
  EXPECT_EQ(layout_.ShimRecordPath({"default", "c1"}), root_ + "/state/shim/default--c1.json");
  EXPECT_EQ(layout_.SandboxStatePath({"default", "c1"}),
            root_ + "/state/shim/default--c1.state.json");
  EXPECT_NE(layout_.ShimRecordPath({"k8s.io", "c1"}), layout_.ShimRecordPath({"default", "c1"}));
  EXPECT_EQ(RuntimeLayout("/r", "/l").ShimRecordPath({"default", "c1"}), "");
}

TEST_F(ShimRecordTest, RoundTripsAndIsPrivate) {
  const ShimRecord record = RecordOf("c1", 1234, 5678);
  const std::string path = Save(record);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(layout_.ShimRecordDir().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  auto loaded = LoadShimRecord(path);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->key, record.key);
  EXPECT_EQ(loaded->shim_pid, 1234);
  EXPECT_EQ(loaded->shim_start_time, 5678u);
  EXPECT_EQ(loaded->config_path, record.config_path);
  EXPECT_EQ(loaded->socket_path, record.socket_path);
  EXPECT_EQ(loaded->bundle, record.bundle);
  EXPECT_EQ(LoadShimRecord(layout_.ShimRecordPath({"default", "none"})).error().code,
            ErrorCode::kNotFound);
}

TEST_F(ShimRecordTest, ARecordOfADeadPidIsSwept) {
  ExpectSwept(RecordOf("dead1", DeadPid(), 4242));
  EXPECT_EQ(CountLines("info"), 1u) << log_.str();  // one line per sweep
}

TEST_F(ShimRecordTest, ALivePidWithAnotherStartTimeIsADeadShim) {
  // The pid was reused: this process has it now, but started at another time.
  ExpectSwept(RecordOf("reused1", ::getpid(), ProcessStartTime(::getpid()) + 1));
}

TEST_F(ShimRecordTest, AShimThatExitedButIsNotReapedYetIsDead) {
  // containerd reaps dead shims (it is their subreaper) when it gets to it: a zombie
  // has the pid and start time still.
  pid_t zombie = ::fork();
  if (zombie == 0) _exit(0);
  const uint64_t start_time = ProcessStartTime(zombie);
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, zombie, &info, WEXITED | WNOWAIT), 0);  // exited, not reaped
  ASSERT_EQ(ProcessStartTime(zombie), start_time);
  const std::string path = Save(RecordOf("zombie1", zombie, start_time));
  EXPECT_EQ(SweepDeadShims(Release(), {"default", "starting"}).released, 1u);
  EXPECT_FALSE(fs::exists(path));
  ::waitpid(zombie, nullptr, 0);
}

TEST_F(ShimRecordTest, ALiveShimsRecordAndSocketAreLeft) {
  const ShimRecord live = RecordOf("live1", ::getpid(), ProcessStartTime(::getpid()));
  const std::string path = Save(live);
  UniqueFd listener = ListenOn(live.socket_path);
  const SweepReport report = SweepDeadShims(Release(), {"default", "starting"});
  EXPECT_EQ(report.released, 0u);
  EXPECT_EQ(report.live, 1u);
  EXPECT_TRUE(torn_down_.empty());
  EXPECT_TRUE(fs::exists(live.socket_path));
  EXPECT_TRUE(fs::exists(path));
  // `delete` of the same key leaves it too.
  std::string why;
  EXPECT_EQ(ReleaseIfDead(path, Release(), &why), RecordOutcome::kLive);
  EXPECT_TRUE(fs::exists(path));
}

TEST_F(ShimRecordTest, DeleteWaitsForAShimThatIsStillExiting) {
  // containerd runs `delete` once the shim's connection closed; the kernel may not have
  // made the process a zombie yet.
  int exit_now[2];
  ASSERT_EQ(::pipe(exit_now), 0);
  pid_t exiting = ::fork();
  if (exiting == 0) {
    char byte;
    ::close(exit_now[1]);
    (void)::read(exit_now[0], &byte, 1);  // until the test closes its end
    _exit(0);
  }
  ::close(exit_now[0]);
  const ShimRecord record = RecordOf("exiting1", exiting, ProcessStartTime(exiting));
  const std::string path = Save(record);
  std::string why;
  EXPECT_EQ(ReleaseIfDead(path, Release(), &why), RecordOutcome::kLive);  // no wait
  std::thread ender([fd = exit_now[1]] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::close(fd);
  });
  DeadShimRelease release = Release();
  release.exit_wait_ms = 30000;
  EXPECT_EQ(ReleaseIfDead(path, release, &why), RecordOutcome::kReleased) << why;
  ender.join();
  EXPECT_FALSE(fs::exists(path));
  ::waitpid(exiting, nullptr, 0);
}

TEST_F(ShimRecordTest, TheContainerBeingStartedIsNotSwept) {
  const ShimRecord dead = RecordOf("again", DeadPid(), 4242);
  const std::string path = Save(dead);
  EXPECT_EQ(SweepDeadShims(Release(), dead.key).released, 0u);
  EXPECT_TRUE(torn_down_.empty());
  EXPECT_TRUE(fs::exists(path));
}

TEST_F(ShimRecordTest, AGarbageRecordIsSkippedWithOneWarning) {
  fs::create_directories(layout_.ShimRecordDir());
  const std::string garbage = layout_.ShimRecordDir() + "/default--garbage.json";
  std::ofstream(garbage) << "{\"version\": 1, \"namespace\": [[[";
  const ShimRecord dead = RecordOf("dead2", DeadPid(), 4242);
  Save(dead);
  const SweepReport report = SweepDeadShims(Release(), {"default", "starting"});
  EXPECT_EQ(report.skipped, 1u);
  EXPECT_EQ(report.released, 1u);  // the garbage stops nothing else
  EXPECT_EQ(CountLines("warning"), 1u) << log_.str();
  EXPECT_TRUE(fs::exists(garbage));  // not ours to judge: left for an operator
  ASSERT_EQ(torn_down_.size(), 1u);
  EXPECT_EQ(torn_down_[0].key, dead.key);
}

TEST_F(ShimRecordTest, RecordsThatAreNotOursAreRefused) {
  fs::create_directories(layout_.ShimRecordDir());
  const std::string dir = layout_.ShimRecordDir();
  // A record naming another sandbox than its file name: it must not steer a sweep.
  ShimRecord other = RecordOf("victim", DeadPid(), 4242);
  std::ofstream(dir + "/default--liar.json") << SerializeShimRecord(other);
  // Too big.
  std::ofstream(dir + "/default--big.json") << std::string(kMaxShimRecordBytes + 1, ' ');
  // A symlink to a record.
  const std::string target = Save(RecordOf("target", ::getpid(), ProcessStartTime(::getpid())));
  fs::create_symlink(target, dir + "/default--link.json");
  // A FIFO: opening it must not block the sweep.
  ASSERT_EQ(::mkfifo((dir + "/default--fifo.json").c_str(), 0600), 0);
  const SweepReport report = SweepDeadShims(Release(), {"default", "starting"});
  EXPECT_EQ(report.skipped, 4u) << log_.str();
  EXPECT_EQ(report.live, 1u);
  EXPECT_TRUE(torn_down_.empty());
  EXPECT_EQ(CountLines("warning"), 4u) << log_.str();
}

TEST_F(ShimRecordTest, ARecordHeldByAnotherSweepIsLeftToIt) {
  const ShimRecord dead = RecordOf("held", DeadPid(), 4242);
  const std::string path = Save(dead);
  UniqueFd holder(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_EQ(::flock(holder.get(), LOCK_EX), 0);
  const SweepReport report = SweepDeadShims(Release(), {"default", "starting"});
  EXPECT_EQ(report.skipped, 1u);
  EXPECT_TRUE(torn_down_.empty());
  EXPECT_TRUE(fs::exists(path));
  holder.Reset();
  EXPECT_EQ(SweepDeadShims(Release(), {"default", "starting"}).released, 1u);
}

TEST_F(ShimRecordTest, AFailedTeardownKeepsTheRecord) {
  const ShimRecord dead = RecordOf("other-config", DeadPid(), 4242);
  const std::string path = Save(dead);
  DeadShimRelease release = Release();
  release.teardown = [](const ShimRecord&) {
    return Status(MakeError(ErrorCode::kFailedPrecondition, "ran with another config"));
  };
  const SweepReport report = SweepDeadShims(release, {"default", "starting"});
  EXPECT_EQ(report.skipped, 1u);
  EXPECT_TRUE(fs::exists(path));
}

TEST_F(ShimRecordTest, ASocketOutsideTheSocketDirIsLeftAlone) {
  ShimRecord dead = RecordOf("outside", DeadPid(), 4242);
  dead.socket_path = root_ + "/elsewhere.sock";
  LeaveSocket(dead.socket_path);
  Save(dead);
  EXPECT_EQ(SweepDeadShims(Release(), {"default", "starting"}).released, 1u);
  EXPECT_TRUE(fs::exists(dead.socket_path));
}

TEST_F(ShimRecordTest, OneSweepIsBounded) {
  for (int i = 0; i < 5; ++i) Save(RecordOf("dead-" + std::to_string(i), DeadPid(), 4242));
  SweepReport report = SweepDeadShims(Release(), {"default", "starting"}, 256, 2);
  EXPECT_EQ(report.released, 2u);
  EXPECT_TRUE(report.capped);
  report = SweepDeadShims(Release(), {"default", "starting"}, 256, 8);
  EXPECT_EQ(report.released, 3u);
  EXPECT_FALSE(report.capped);
}

TEST(ShimRecordParseTest, RefusesWhatIsNotARecord) {
  for (const char* text :
       {"", "[]", "{}", "{\"version\": 2}", "nonsense",
        "{\"version\":1,\"namespace\":\"a\",\"id\":\"b\",\"config_path\":\"\",\"socket\":\"\","
        "\"bundle\":\"\",\"shim_pid\":-1,\"shim_start_time\":1}",
        "{\"version\":1,\"namespace\":\"a\",\"id\":\"b\",\"config_path\":\"\",\"socket\":\"\","
        "\"bundle\":\"\",\"shim_pid\":7}",
        "{\"version\":1,\"namespace\":3,\"id\":\"b\",\"config_path\":\"\",\"socket\":\"\","
        "\"bundle\":\"\",\"shim_pid\":7,\"shim_start_time\":1}"}) {
    EXPECT_FALSE(ParseShimRecord(text).ok()) << text;
  }
  EXPECT_FALSE(ParseShimRecord(std::string(100000, '[')).ok());
}

}  // namespace
}  // namespace beaconbox::shim
