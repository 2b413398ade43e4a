// IoRelay (host/shim/io_relay.h) against a FAKE guest: a ttrpc server on a
// socketpair serving ReadOutput, WriteInput and CloseInput with the guest's real
// StdioPipe (guest/vminitd/stdio_pipe.h) over real pipes, plus a Ping standing for
// every other call (Kill, Pids, ...). containerd's side is real FIFOs.
#include "host/shim/io_relay.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <map>
#include <thread>

#include "guest/vminitd/stdio_pipe.h"

namespace beaconbox::shim {
namespace {

using namespace std::chrono_literals;
using guest::StdioPipe;
// A bound that only catches a hang; nothing here measures time.
constexpr auto kHang = 60s;

struct PipeEnds {
  UniqueFd read_end, write_end;
};

PipeEnds MakePipe() {
  int fds[2];
  EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

class FakeGuest {
 public:
  FakeGuest() {
    ttrpc::RegisterUnaryProto<guestapi::ReadOutputRequest, guestapi::ReadOutputResponse>(
        server_, "beaconbox.guest.v1.Guest", "ReadOutput",
        [this](ttrpc::ServerContext&, const guestapi::ReadOutputRequest& request,
               guestapi::ReadOutputResponse* response) {
          auto pipe = Find(request.stream() == guestapi::STREAM_STDERR ? "stderr" : "stdout");
          if (!pipe) return ttrpc::RpcStatus{ttrpc::Code::kNotFound, "no such stream"};
          ++reads_;
          auto chunk =
              pipe->Read(request.max_bytes(), std::chrono::milliseconds(request.wait_ms()));
          if (!chunk.ok()) return ttrpc::RpcStatusFromError(chunk.error());
          response->set_data(chunk->data);
          response->set_eof(chunk->eof);
          return ttrpc::RpcStatus{};
        });
    ttrpc::RegisterUnaryProto<guestapi::WriteInputRequest, guestapi::WriteInputResponse>(
        server_, "beaconbox.guest.v1.Guest", "WriteInput",
        [this](ttrpc::ServerContext&, const guestapi::WriteInputRequest& request,
               guestapi::WriteInputResponse* response) {
          auto pipe = Find("stdin");
          if (!pipe) return ttrpc::RpcStatus{ttrpc::Code::kNotFound, "no stdin"};
          auto written = pipe->Write(request.data(), std::chrono::milliseconds(request.wait_ms()));
          if (!written.ok()) return ttrpc::RpcStatusFromError(written.error());
          response->set_written(static_cast<uint32_t>(*written));
          return ttrpc::RpcStatus{};
        });
    ttrpc::RegisterUnaryProto<guestapi::CloseInputRequest, guestapi::Empty>(
        server_, "beaconbox.guest.v1.Guest", "CloseInput",
        [this](ttrpc::ServerContext&, const guestapi::CloseInputRequest&, guestapi::Empty*) {
          if (auto pipe = Find("stdin")) pipe->Close();
          return ttrpc::RpcStatus{};
        });
    server_.RegisterUnary(
        "beaconbox.guest.v1.Guest", "Ping",
        [](ttrpc::ServerContext&, std::string_view, std::string*) { return ttrpc::RpcStatus{}; });
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    serving_ = std::thread([this, fd = fds[1]] { server_.ServeConnection(UniqueFd(fd)); });
    client_ = std::make_unique<GuestClient>(UniqueFd(fds[0]));
  }
  ~FakeGuest() {
    client_->Close();
    server_.Shutdown();
    serving_.join();
    for (auto& [name, pipe] : pipes_) pipe->Close();
  }

  void Add(const std::string& name, UniqueFd fd) {
    std::lock_guard lock(mutex_);
    pipes_[name] = std::make_shared<StdioPipe>(std::move(fd));
  }
  std::shared_ptr<StdioPipe> Find(const std::string& name) {
    std::lock_guard lock(mutex_);
    auto it = pipes_.find(name);
    return it == pipes_.end() ? nullptr : it->second;
  }
  // Any other guest call (Kill, Pids, Wait...).
  Status Ping() {
    guestapi::Empty empty;
    return client_->CallGuest("Ping", empty, nullptr, 10s);
  }
  GuestClient& client() { return *client_; }
  int reads() const { return reads_; }

 private:
  ttrpc::Server server_;
  std::thread serving_;
  std::unique_ptr<GuestClient> client_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<StdioPipe>> pipes_;
  std::atomic<int> reads_{0};
};

class IoRelayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/bbx-io-relay.XXXXXX";
    ASSERT_NE(::mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Fifo(const std::string& name) {
    std::string path = dir_ + "/" + name;
    EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0);
    return path;
  }
  std::string dir_;
};

// Reads `fd` to EOF; the number of bytes.
size_t CountToEof(int fd) {
  char buffer[65536];
  size_t total = 0;
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return total;
    total += static_cast<size_t>(n);
  }
}

TEST_F(IoRelayTest, LaggingFifoReaderLosesNothingAndOtherCallsStillAnswer) {
  constexpr size_t kTotal = 20'000'000;
  FakeGuest guest;
  auto process_stdout = MakePipe();
  guest.Add("stdout", std::move(process_stdout.read_end));
  std::string fifo = Fifo("stdout");
  IoRelay relay(guest.client(), "c1", "", StdioPaths{"", fifo, "", false});
  relay.Start();
  // The container writes 20 MB; it blocks on its pipe while nobody reads.
  std::atomic<size_t> written{0};
  std::thread container([&, fd = std::move(process_stdout.write_end)]() mutable {
    std::string block(65536, 'x');
    while (written < kTotal) {
      size_t n = std::min(block.size(), kTotal - written);
      if (::write(fd.get(), block.data(), n) != static_cast<ssize_t>(n)) break;
      written += n;
    }
  });
  UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(reader);
  // The reader lags: the container stalls well short of 20 MB, and every other call
  // on the guest connection is answered meanwhile.
  std::this_thread::sleep_for(500ms);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(guest.Ping().ok()) << "call " << i;
  EXPECT_LT(written.load(), kTotal);
  size_t got = CountToEof(reader.get());
  container.join();
  EXPECT_EQ(got, kTotal);
  EXPECT_TRUE(relay.WaitOutputDrained(kHang));
  relay.Stop();
}

// ctr run -d / ctr c restore exit (their reader goes), later ctr task attach opens the
// FIFO again: the container never blocks meanwhile, and the new reader gets what the
// container writes from then on.
TEST_F(IoRelayTest, AReaderThatWentAwayIsFollowedByTheNextOne) {
  ::signal(SIGPIPE, SIG_IGN);  // as the shim (shim_actions.cc): a write without reader is EPIPE
  FakeGuest guest;
  auto process_stdout = MakePipe();
  guest.Add("stdout", std::move(process_stdout.read_end));
  std::string fifo = Fifo("stdout");
  IoRelay relay(guest.client(), "c1", "", StdioPaths{"", fifo, "", false});
  relay.Start();
  auto write_line = [&](const std::string& line) {
    ASSERT_EQ(::write(process_stdout.write_end.get(), line.data(), line.size()),
              static_cast<ssize_t>(line.size()));
  };
  {
    UniqueFd first(::open(fifo.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(first);
    write_line("to the first\n");
    char buffer[64];
    ASSERT_GT(::read(first.get(), buffer, sizeof(buffer)), 0);
  }
  // Nobody reads: 1 MB (16 x a pipe's buffer) is drained, not held, so the container
  // does not block.
  std::string block(65536, 'x');
  for (int i = 0; i < 16; ++i) write_line(block);
  UniqueFd second(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(second);
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + kHang;
  // Lines go on until the new reader has one whole (the relay reopens the FIFO on
  // output after it).
  for (int i = 0; got.find("to the second\n") == std::string::npos; ++i) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the new reader got: " << got.size();
    write_line("to the second\n");
    pollfd ready{second.get(), POLLIN, 0};
    if (::poll(&ready, 1, 100) > 0) {
      char buffer[65536];
      ssize_t n = ::read(second.get(), buffer, sizeof(buffer));
      if (n > 0) got.append(buffer, static_cast<size_t>(n));
    }
  }
  process_stdout.write_end.Reset();
  EXPECT_TRUE(relay.WaitOutputDrained(kHang));
  relay.Stop();
}

TEST_F(IoRelayTest, StopCancelsAReadTheGuestNeverAnswers) {
  FakeGuest guest;
  auto process_stdout = MakePipe();
  guest.Add("stdout", std::move(process_stdout.read_end));
  std::string fifo = Fifo("stdout");
  IoRelay relay(guest.client(), "c1", "e1", StdioPaths{"", fifo, "", false});
  relay.Start();
  UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_CLOEXEC));
  // A background child holds the pipe open and writes nothing: the guest's read waits.
  while (guest.reads() == 0) std::this_thread::sleep_for(10ms);
  auto stopped = std::async(std::launch::async, [&] { relay.Stop(); });
  ASSERT_EQ(stopped.wait_for(kHang), std::future_status::ready) << "Stop hangs on a guest read";
  EXPECT_TRUE(guest.Ping().ok());
}

TEST_F(IoRelayTest, StopEndsAWriteToAFifoNobodyReads) {
  FakeGuest guest;
  auto process_stdout = MakePipe();
  guest.Add("stdout", std::move(process_stdout.read_end));
  std::string fifo = Fifo("stdout");
  IoRelay relay(guest.client(), "c1", "", StdioPaths{"", fifo, "", false});
  relay.Start();
  UniqueFd reader(::open(fifo.c_str(), O_RDONLY | O_CLOEXEC));  // opens, never reads
  // More than the FIFO holds: the relay ends up waiting for FIFO room.
  ASSERT_EQ(::fcntl(process_stdout.write_end.get(), F_SETFL, O_NONBLOCK), 0);
  std::string block(65536, 'y');
  size_t written = 0;
  for (int tries = 0; written < 3 * block.size() && tries < 6000; ++tries) {
    ssize_t n = ::write(process_stdout.write_end.get(), block.data(), block.size());
    if (n > 0) written += static_cast<size_t>(n);
    if (n <= 0) std::this_thread::sleep_for(10ms);
  }
  ASSERT_GE(written, 3 * block.size());
  auto stopped = std::async(std::launch::async, [&] { relay.Stop(); });
  ASSERT_EQ(stopped.wait_for(kHang), std::future_status::ready) << "Stop hangs on a full FIFO";
}

TEST_F(IoRelayTest, StdinArrivesWholeAndItsEofClosesTheProcessStdin) {
  constexpr size_t kTotal = 5'000'000;
  FakeGuest guest;
  auto process_stdin = MakePipe();
  guest.Add("stdin", std::move(process_stdin.write_end));
  std::string fifo = Fifo("stdin");
  IoRelay relay(guest.client(), "c1", "", StdioPaths{fifo, "", "", false});
  relay.Start();
  std::thread client([&] {
    UniqueFd writer(::open(fifo.c_str(), O_WRONLY | O_CLOEXEC));
    std::string block(65536, 'z');
    for (size_t done = 0; done < kTotal;) {
      size_t n = std::min(block.size(), kTotal - done);
      ASSERT_EQ(::write(writer.get(), block.data(), n), static_cast<ssize_t>(n));
      done += n;
    }
  });
  // The process reads slowly at first: the relay waits, nothing is lost.
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(guest.Ping().ok());
  size_t got = CountToEof(process_stdin.read_end.get());  // EOF: CloseInput came
  client.join();
  EXPECT_EQ(got, kTotal);
  relay.Stop();
}

TEST_F(IoRelayTest, CloseStdinSendsWhatTheFifoHoldsThenCloses) {
  FakeGuest guest;
  auto process_stdin = MakePipe();
  guest.Add("stdin", std::move(process_stdin.write_end));
  std::string fifo = Fifo("stdin");
  IoRelay relay(guest.client(), "c1", "", StdioPaths{fifo, "", "", false});
  relay.Start();
  // The client writes and keeps the FIFO open; CloseIO then ends stdin.
  UniqueFd writer(::open(fifo.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(writer);
  ASSERT_EQ(::write(writer.get(), "hello", 5), 5);
  char first[5];
  ASSERT_EQ(::read(process_stdin.read_end.get(), first, 5), 5);  // relayed before CloseIO
  ASSERT_EQ(::write(writer.get(), "world", 5), 5);
  relay.CloseStdin();
  std::string rest;
  char buffer[64];
  ssize_t n;
  while ((n = ::read(process_stdin.read_end.get(), buffer, sizeof(buffer))) > 0)
    rest.append(buffer, n);
  EXPECT_EQ(std::string(first, 5) + rest, "helloworld");
  relay.Stop();
}

}  // namespace
}  // namespace beaconbox::shim
