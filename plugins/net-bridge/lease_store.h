// Persistent address leases in LMDB, shared by every shim on the machine.
//
// One environment file (db_path, e.g. /var/lib/beacon/network.db, plus its
// "-lock" file) holds four databases. A container is keyed by its containerd
// namespace and id, "<namespace>/<id>" (a namespace never contains '/'), because the
// same id may exist in two namespaces:
//   leases: "<namespace>/<id>" -> LeaseRecord (encoded below)
//   addrs:  IPv4 address (4 bytes, big endian) -> "<namespace>/<id>"; makes "is it
//           free" and "next free after X" O(log n) cursor lookups
//   addrs6: IPv6 address (16 bytes, big endian) -> "<namespace>/<id>", the same for
//           the IPv6 lease range
//   taps:   TAP name -> "<namespace>/<id>"; keeps TAP names unique despite hash
//           collisions
//   meta:   "next"/"next6" -> where the next search starts; "subnet"/"prefix6" -> the
//           pools' ranges; "schema" -> "3"; "gateway4_made" -> "<bridge> <a.b.c.d>/<len>",
//           the IPv4 gateway address this configuration added to its bridge (absent
//           when the address was there before it), so ipv4 = false removes only that
// One lease holds both addresses (dual stack), taken in one write transaction; either
// may be absent (0) when its family is off. Schema 3 records (version 2) carry the IPv6
// address; version-1 records (schema 2, IPv4 only) are read as they are and get an
// IPv6 address at their next Acquire. Schema 2 files are relabelled 3 when opened, so
// an older plugin refuses them with its schema message instead of misreading them.
// Schema 1 (ABI v1 plugins) keyed by the bare id. Opening a schema-1 file migrates it
// in one write transaction: each lease is re-keyed as "<its recorded namespace>/<id>"
// and the addrs and taps entries pointing at it follow; TAP names stay as they are
// (the devices exist under them). An older plugin must not open a migrated file.
// Every change is one write transaction; LMDB serializes writers across processes
// with a robust mutex in the lock file, so a shim killed mid-transaction leaves the
// database as it was before that transaction.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/base/result.h"
#include "plugins/net-bridge/config.h"

namespace beaconbox::net {

// A container as the network knows it: containerd namespace and id.
struct ContainerRef {
  std::string container_namespace;
  std::string id;
  // The store's key, "<namespace>/<id>".
  std::string Key() const { return container_namespace + "/" + id; }
  // "<namespace>/<id>", for messages and reports.
  std::string Name() const { return Key(); }
};

struct LeaseRecord {
  std::string container_id;
  std::string container_namespace;
  Ipv4 address = 0;   // 0: none (IPv6-only)
  Ipv6 address6 = 0;  // 0: none (IPv4 only)
  std::string tap_name;
  int64_t owner_pid = 0;
  uint64_t owner_start_time = 0;  // /proc/<pid>/stat starttime; tells pid reuse apart
  int64_t created_unix = 0;
};

struct LeaseOwner {
  int64_t pid = 0;
  uint64_t start_time = 0;
};

// The owner of `pid` as the kernel knows it now; start_time 0 when it is gone.
LeaseOwner CurrentOwner(int64_t pid);
// True while the process that took the lease runs (same pid, same start time).
bool OwnerAlive(const LeaseRecord& lease);

// "beacon-" + 8 hex digits of a hash of namespace and id (and the attempt, for
// collisions): 15 characters, the most IFNAMSIZ allows.
std::string TapNameFor(const ContainerRef& container, uint32_t attempt = 0);
// Locally administered unicast MAC derived from namespace and id.
std::string MacFor(const ContainerRef& container);

// What a store hands out: an IPv4 pool, an IPv6 range, or both.
struct AddressPools {
  bool ipv4 = true;
  Subnet subnet{0x0a580000u, 16};
  Ipv4 gateway = 0x0a580001u;
  bool ipv6 = false;
  Prefix6 prefix6;
  Ipv6 gateway6 = 0;

  static AddressPools Of(const BridgeConfig& config);
};

class LeaseStore {
 public:
  static constexpr size_t kMapSize = 64u << 20;  // 64 MiB: ~20 MiB for a full /16

  // Opens (creating if missing) the environment at `path`. A file that is not an
  // LMDB environment, or one that cannot be read, is a one-line error naming it.
  static Result<std::unique_ptr<LeaseStore>> Open(const std::string& path, const Subnet& subnet,
                                                  Ipv4 gateway);
  static Result<std::unique_ptr<LeaseStore>> Open(const std::string& path,
                                                  const AddressPools& pools);
  ~LeaseStore();
  LeaseStore(const LeaseStore&) = delete;
  LeaseStore& operator=(const LeaseStore&) = delete;

  struct Acquired {
    LeaseRecord lease;
    bool created = false;  // false: the id already had this lease
  };
  // The lease of `container`, allocating the next free address of each enabled family
  // (after the last one handed out, wrapping) when it has none, both in one write
  // transaction. An existing lease keeps its addresses (and gets one of an enabled
  // family it lacks) and gets `owner` as its new owner. A new lease skips TAP names in this store
  // and those for which `tap_name_taken` says true (a device of another configuration).
  Result<Acquired> Acquire(const ContainerRef& container, const LeaseOwner& owner,
                           const std::function<bool(const std::string&)>& tap_name_taken = {});
  // Removes the lease of `container`; nullopt when there was none. When
  // `only_if` is given, the lease is removed only if it still equals it (owner and
  // creation), so a concurrent re-attach is never undone.
  Result<std::optional<LeaseRecord>> Release(const ContainerRef& container,
                                             const LeaseRecord* only_if = nullptr);
  Result<std::vector<LeaseRecord>> List();
  Result<std::optional<LeaseRecord>> Find(const ContainerRef& container);
  Result<size_t> Count();
  // Leases holding an IPv4 address.
  Result<size_t> CountIpv4();
  // A meta value ("" when absent) and setting one ("" removes it); for keys the
  // store does not interpret itself ("gateway4_made").
  Result<std::string> Meta(const std::string& key);
  Status SetMeta(const std::string& key, const std::string& value);

  const std::string& path() const { return path_; }

 private:
  LeaseStore(std::string path, const AddressPools& pools)
      : path_(std::move(path)), pools_(pools), subnet_(pools.subnet), gateway_(pools.gateway) {}
  Error LmdbError(std::string_view operation, int rc) const;
  Status Setup();
  // How many entries `dbi` holds.
  Result<size_t> Entries(MDB_dbi dbi);
  // Records `text` under meta `meta_key`; refused while `counted` has entries and the
  // recorded value differs (the message names both and what to do).
  Status RecordRange(MDB_txn* txn, const char* meta_key, const std::string& text, MDB_dbi counted,
                     const char* leases_from, const char* config_says);
  // Re-keys a schema-1 file's leases by namespace and id (see the file comment).
  Status MigrateFromSchema1(MDB_txn* txn);
  // Runs `body` in a transaction; commits a write transaction when body succeeds.
  Status InTransaction(bool write, const std::function<Status(MDB_txn*)>& body);
  Result<Ipv4> FindFree(MDB_txn* txn);
  Result<std::optional<Ipv4>> FindFreeIn(MDB_cursor* cursor, Ipv4 from, Ipv4 to);
  Result<Ipv6> FindFree6(MDB_txn* txn);
  Result<std::optional<Ipv6>> FindFreeIn6(MDB_cursor* cursor, Ipv6 from, Ipv6 to);
  // Records `lease`'s address of `family` (4 or 6) in its index and moves the hint.
  Status IndexAddress(MDB_txn* txn, const LeaseRecord& lease, const std::string& key, int family);

  std::string path_;
  AddressPools pools_;
  Subnet subnet_;
  Ipv4 gateway_;
  MDB_env* env_ = nullptr;
  MDB_dbi leases_ = 0, addrs_ = 0, addrs6_ = 0, taps_ = 0, meta_ = 0;
  std::mutex mutex_;  // one transaction at a time per process keeps this simple
};

}  // namespace beaconbox::net
