// The shim record (RuntimeLayout::ShimRecordPath, <state_dir>/shim/<ns>--<id>.json):
// what the `delete` action needs after the serving shim died, kept where containerd's
// bundle removal cannot take it. containerd 1.7 may remove the bundle before its
// dead-shim cleanup runs `delete` (whose exec then fails in the missing working
// directory), so the record also lets any later shim `start` or `delete` find a dead
// shim's leftovers and release them (SweepDeadShims).
//
// Written by `start` once it forked the serving shim, removed by the serving shim's
// teardown and by whoever releases a dead shim's leftovers. Schema (JSON, version 1):
//   { "version": 1, "namespace": "default", "id": "c1", "shim_pid": 1234,
//     "shim_start_time": 567890, "config_path": "/etc/beaconbox/config.toml",
//     "socket": "<run_dir>/s/<32 hex>", "bundle": "/run/containerd/.../c1" }
// The key is the sandbox's (a pod's containers share its shim and its record); the
// serving shim is alive while a process with that pid has that start time
// (/proc/<pid>/stat field 22), so a reused pid is not taken for the shim.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/base/result.h"
#include "host/shim/runtime_layout.h"

namespace beaconbox::shim {

struct ShimRecord {
  ContainerKey key;      // the sandbox the shim serves
  int64_t shim_pid = 0;  // the serving shim
  uint64_t shim_start_time = 0;
  std::string config_path;  // the config in effect ("" for the built-in defaults)
  std::string socket_path;  // the shim's ttrpc socket
  std::string bundle;       // the sandbox's bundle (state files of older shims)
};

// A record is at most this big; anything larger is refused unread.
inline constexpr size_t kMaxShimRecordBytes = 16 << 10;

std::string SerializeShimRecord(const ShimRecord& record);
Result<ShimRecord> ParseShimRecord(std::string_view text);

// Creates the record directory (0700) and writes `record` atomically (0600).
Status SaveShimRecord(const std::string& path, const ShimRecord& record);
// Reads the record at `path`: a regular file (not followed through a symlink) owned
// by this process' user, at most kMaxShimRecordBytes, parseable, and naming the key its
// file name says. kNotFound when there is none.
Result<ShimRecord> LoadShimRecord(const std::string& path);

// True while the shim `record` names runs (pid and start time both match).
bool ShimRecordAlive(const ShimRecord& record);

// What became of one record.
enum class RecordOutcome {
  kReleased,  // its shim was dead: teardown ran, socket and record removed
  kLive,      // its shim runs: left alone
  kSkipped,   // refused (not ours, too big, unparseable) or claimed by someone else
  kGone,      // no record (any more)
};

struct DeadShimRelease {
  // The record dir and the socket dir of the layout in effect (RuntimeLayout).
  std::string record_dir;
  std::string socket_dir;
  // Releases what the dead shim's sandbox held (TeardownFromRecord with the loaded
  // plugins, from its state file). Called with the record locked; must be idempotent.
  // An error (no plugins, another config) keeps the record for a later try: kSkipped.
  std::function<Status(const ShimRecord&)> teardown;
  // How long to wait for a record another sweep holds: 0 skips it at once.
  int lock_wait_ms = 0;
  // How long to wait for a shim that still runs to exit: 0 takes it for live at once.
  // containerd runs `delete` once the shim's connection closed, which happens while
  // the kernel is still ending the process (its files close before it is a zombie).
  int exit_wait_ms = 0;
};

// Releases the record at `path` when its shim is dead: takes an flock on it (waiting up
// to release.lock_wait_ms), checks it is still the file at `path`, runs the teardown,
// removes the shim's socket (only inside release.socket_dir, and only while nothing
// answers on it) and then the record. A live shim's record is left untouched. `why`
// (may be null) receives the reason of a kSkipped.
RecordOutcome ReleaseIfDead(const std::string& path, const DeadShimRelease& release,
                            std::string* why);

struct SweepReport {
  size_t released = 0;
  size_t live = 0;
  size_t skipped = 0;
  bool capped = false;  // more records than one sweep looks at
};

// One sweep over release.record_dir: every record but the one of `exclude` (the
// container `delete` releases itself; an empty key excludes nothing, as `start` asks)
// goes through ReleaseIfDead. Bounded: at most
// `max_records` records are looked at and `max_releases` dead ones released per
// sweep. One warning per refused record, one info line per sweep that found anything.
inline constexpr size_t kSweepMaxRecords = 256;
inline constexpr size_t kSweepMaxReleases = 8;
SweepReport SweepDeadShims(const DeadShimRelease& release, const ContainerKey& exclude,
                           size_t max_records = kSweepMaxRecords,
                           size_t max_releases = kSweepMaxReleases);

}  // namespace beaconbox::shim
