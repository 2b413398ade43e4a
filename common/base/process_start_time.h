// The start time of a process (/proc/<pid>/stat field 22): with the pid it names one
// process for the life of the machine, so a recorded (pid, start time) pair is never
// taken for another process that got the pid later. Header-only like the rest of
// common/base: the shim (its own record) and the plugins (their children) both use it.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/base/unique_fd.h"

namespace beaconbox {

// Fields 3 (state: 'R', 'S', 'Z', ...) and 22 (start time, clock ticks since boot) of
// /proc/<pid>/stat; false when there is no such process or the file cannot be read.
inline bool ReadProcessStat(int64_t pid, char* state, uint64_t* start_time) {
  if (pid <= 0 || pid > 4194304) return false;  // PID_MAX_LIMIT
  UniqueFd fd(::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return false;
  char buffer[1024];
  ssize_t n;
  do {
    n = ::read(fd.get(), buffer, sizeof(buffer) - 1);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return false;
  buffer[n] = '\0';
  // "pid (comm) state ppid ...": comm may hold spaces and ')', so fields are counted
  // from the last ')'. After it come field 3 (state) ... field 22 (starttime).
  const char* fields = std::strrchr(buffer, ')');
  if (fields == nullptr || fields[1] != ' ' || fields[2] == '\0') return false;
  *state = fields[2];
  int field = 2;
  for (const char* at = fields + 1; *at != '\0'; ++at) {
    if (*at != ' ') continue;
    if (++field == 22) {
      *start_time = std::strtoull(at + 1, nullptr, 10);
      return true;
    }
  }
  return false;
}

// Clock ticks since boot at which `pid` started; 0 when there is no such process or
// the file cannot be read. Read it while the pid is known to be the right process
// (an unreaped child, or the caller itself).
inline uint64_t ProcessStartTime(int64_t pid) {
  char state = 0;
  uint64_t start_time = 0;
  return ReadProcessStat(pid, &state, &start_time) ? start_time : 0;
}

// True while the process recorded as (`pid`, `start_time`) runs: the pid exists, has
// that start time and is not a zombie (it exited; its parent has not reaped it yet).
inline bool ProcessRuns(int64_t pid, uint64_t start_time) {
  char state = 0;
  uint64_t now = 0;
  return start_time != 0 && ReadProcessStat(pid, &state, &now) && now == start_time &&
         state != 'Z' && state != 'X';
}

}  // namespace beaconbox
