#include "plugins/net-bridge/lease_store.h"

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/base/errno_error.h"

namespace beaconbox::net {
namespace {

// The record's layout (the keys have a schema): 1 IPv4 only, 2 with the IPv6 address.
constexpr uint8_t kRecordVersion = 2;
constexpr char kSchema[] = "3";
constexpr size_t kMaxIdLength = 1024;

uint64_t Fnv1a64(std::string_view text, uint64_t seed) {
  uint64_t hash = 0xcbf29ce484222325ull ^ seed;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

MDB_val ValOf(std::string_view bytes) {
  return MDB_val{bytes.size(), const_cast<char*>(bytes.data())};
}
std::string_view ViewOf(const MDB_val& val) {
  return {static_cast<const char*>(val.mv_data), val.mv_size};
}
std::string AddressKey(Ipv4 address) {
  char key[4] = {char(address >> 24), char(address >> 16), char(address >> 8), char(address)};
  return std::string(key, 4);
}
std::string AddressKey6(Ipv6 address) {
  std::string key(16, '\0');
  for (int i = 15; i >= 0; --i) {
    key[i] = char(uint8_t(address));
    address >>= 8;
  }
  return key;
}
std::optional<Ipv6> AddressFromKey6(const MDB_val& val) {
  if (val.mv_size != 16) return std::nullopt;
  auto* bytes = static_cast<const unsigned char*>(val.mv_data);
  Ipv6 address = 0;
  for (size_t i = 0; i < 16; ++i) address = (address << 8) | bytes[i];
  return address;
}
std::optional<Ipv4> AddressFromKey(const MDB_val& val) {
  if (val.mv_size != 4) return std::nullopt;
  auto* bytes = static_cast<const unsigned char*>(val.mv_data);
  return (Ipv4(bytes[0]) << 24) | (Ipv4(bytes[1]) << 16) | (Ipv4(bytes[2]) << 8) | bytes[3];
}

// Fixed little-endian layout: version, address, owner pid, owner start, created,
// (version 2:) the IPv6 address as 16 big-endian bytes, then length-prefixed tap name
// and namespace. The key is "<namespace>/<id>".
template <typename T>
void Put(std::string& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(char(uint64_t(value) >> (8 * i)));
}
std::string EncodeRecord(const LeaseRecord& lease) {
  std::string out;
  Put<uint8_t>(out, kRecordVersion);
  Put<uint32_t>(out, lease.address);
  Put<int64_t>(out, lease.owner_pid);
  Put<uint64_t>(out, lease.owner_start_time);
  Put<int64_t>(out, lease.created_unix);
  out += AddressKey6(lease.address6);
  Put<uint16_t>(out, uint16_t(lease.tap_name.size()));
  out += lease.tap_name;
  Put<uint16_t>(out, uint16_t(lease.container_namespace.size()));
  out += lease.container_namespace;
  return out;
}

class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  template <typename T>
  bool Get(T& value) {
    if (bytes_.size() < sizeof(T)) return false;
    uint64_t raw = 0;
    for (size_t i = 0; i < sizeof(T); ++i) raw |= uint64_t(uint8_t(bytes_[i])) << (8 * i);
    value = T(raw);
    bytes_.remove_prefix(sizeof(T));
    return true;
  }
  bool GetString(std::string& value) {
    uint16_t size = 0;
    if (!Get(size) || bytes_.size() < size) return false;
    value.assign(bytes_.substr(0, size));
    bytes_.remove_prefix(size);
    return true;
  }
  bool GetAddress6(Ipv6& value) {
    if (bytes_.size() < 16) return false;
    MDB_val val{16, const_cast<char*>(bytes_.data())};
    value = *AddressFromKey6(val);
    bytes_.remove_prefix(16);
    return true;
  }
  bool AtEnd() const { return bytes_.empty(); }

 private:
  std::string_view bytes_;
};

// `key` is "<namespace>/<id>" (schema 2) or the bare id (schema 1); the id is what
// follows the first '/', the namespace comes from the record.
std::optional<LeaseRecord> DecodeRecord(std::string_view key, std::string_view bytes) {
  LeaseRecord lease;
  size_t slash = key.find('/');
  lease.container_id = slash == std::string_view::npos ? key : key.substr(slash + 1);
  Reader reader(bytes);
  uint8_t version = 0;
  if (!reader.Get(version) || (version != 1 && version != kRecordVersion) ||
      !reader.Get(lease.address) || !reader.Get(lease.owner_pid) ||
      !reader.Get(lease.owner_start_time) || !reader.Get(lease.created_unix) ||
      (version >= 2 && !reader.GetAddress6(lease.address6)) || !reader.GetString(lease.tap_name) ||
      !reader.GetString(lease.container_namespace) || !reader.AtEnd()) {
    return std::nullopt;
  }
  return lease;
}

}  // namespace

LeaseOwner CurrentOwner(int64_t pid) {
  LeaseOwner owner{pid, 0};
  if (pid <= 0) return owner;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return owner;
  size_t paren = line.rfind(')');  // the command name may itself contain ") "
  if (paren == std::string::npos) return owner;
  std::istringstream fields(line.substr(paren + 1));
  std::string field;
  for (int index = 3; index <= 22 && fields >> field; ++index) {
    if (index == 3 && field == "Z") return owner;  // a zombie no longer owns anything
    if (index == 22) owner.start_time = std::strtoull(field.c_str(), nullptr, 10);
  }
  return owner;
}

bool OwnerAlive(const LeaseRecord& lease) {
  if (lease.owner_pid <= 0) return true;  // unknown owner: never reclaimed by pid
  LeaseOwner now = CurrentOwner(lease.owner_pid);
  if (now.start_time == 0) return false;
  return lease.owner_start_time == 0 || lease.owner_start_time == now.start_time;
}

std::string TapNameFor(const ContainerRef& container, uint32_t attempt) {
  uint64_t hash = Fnv1a64(container.Key(), attempt * 0x9e3779b97f4a7c15ull);
  char name[16];
  std::snprintf(name, sizeof(name), "beacon-%08x", uint32_t(hash ^ (hash >> 32)));
  return name;
}

std::string MacFor(const ContainerRef& container) {
  uint64_t hash = Fnv1a64(container.Key(), 0x6d6163);  // a different seed than the TAP name
  char mac[18];
  // 0x02: locally administered, unicast.
  std::snprintf(mac, sizeof(mac), "02:%02x:%02x:%02x:%02x:%02x", unsigned(hash >> 32) & 0xff,
                unsigned(hash >> 24) & 0xff, unsigned(hash >> 16) & 0xff,
                unsigned(hash >> 8) & 0xff, unsigned(hash) & 0xff);
  return mac;
}

Error LeaseStore::LmdbError(std::string_view operation, int rc) const {
  switch (rc) {
    case MDB_INVALID:
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_VERSION_MISMATCH:
    case MDB_BAD_TXN:
      return MakeError(ErrorCode::kFailedPrecondition,
                       "lease database " + path_ + " is unreadable (" + mdb_strerror(rc) +
                           "): stop the shims using it, move it and its -lock file aside and "
                           "run `beaconbox-ctl gc` (leases are then rebuilt as containers start)");
    case MDB_MAP_FULL:
      return MakeError(ErrorCode::kExhausted, "lease database " + path_ +
                                                  " is full: run `beaconbox-ctl gc` to drop "
                                                  "stale leases");
    case MDB_READERS_FULL:
      return MakeError(ErrorCode::kExhausted,
                       "lease database " + path_ + ": too many readers; remove stale shims");
    default:
      if (rc > 0) {
        std::string what = std::string(operation) + " lease database";
        Error error = ErrnoError(what, path_, rc);
        if (rc == EACCES || rc == EPERM) {
          error.message += ": make it readable and writable by the shim's user (root)";
        } else if (rc == EISDIR || rc == ENOTDIR) {
          error.message += ": db_path must name a file; fix the config key db_path";
        }
        return error;
      }
      return MakeError(ErrorCode::kInternal, std::string(operation) + " lease database " + path_ +
                                                 ": " + mdb_strerror(rc));
  }
}

AddressPools AddressPools::Of(const BridgeConfig& config) {
  return AddressPools{config.ipv4, config.subnet,  config.gateway,
                      config.ipv6, config.prefix6, config.gateway6};
}

Result<std::unique_ptr<LeaseStore>> LeaseStore::Open(const std::string& path, const Subnet& subnet,
                                                     Ipv4 gateway) {
  AddressPools pools;
  pools.subnet = subnet;
  pools.gateway = gateway;
  return Open(path, pools);
}

Result<std::unique_ptr<LeaseStore>> LeaseStore::Open(const std::string& path,
                                                     const AddressPools& pools) {
  std::unique_ptr<LeaseStore> store(new LeaseStore(path, pools));
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::filesystem::create_directories(parent, ec);
  if (ec) {
    return ErrnoError("create directory", parent.string(), ec.value())
        .Wrap("lease database " + path);
  }
  int rc = mdb_env_create(&store->env_);
  if (rc != 0) return store->LmdbError("create", rc);
  mdb_env_set_maxdbs(store->env_, 5);
  mdb_env_set_mapsize(store->env_, kMapSize);
  // NOMETASYNC: one fsync per commit instead of two; a machine crash may lose the
  // last transaction but never breaks the database (and kills every lease's owner).
  rc = mdb_env_open(store->env_, path.c_str(), MDB_NOSUBDIR | MDB_NOTLS | MDB_NOMETASYNC, 0600);
  if (rc != 0) return store->LmdbError("open", rc);
  BBX_RETURN_IF_ERROR(store->Setup());
  return store;
}

LeaseStore::~LeaseStore() {
  if (env_ != nullptr) mdb_env_close(env_);
}

Status LeaseStore::Setup() {
  std::lock_guard lock(mutex_);
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc != 0) return LmdbError("begin", rc);
  auto fail = [&](std::string_view operation, int code) {
    mdb_txn_abort(txn);
    return Status(LmdbError(operation, code));
  };
  if ((rc = mdb_dbi_open(txn, "leases", MDB_CREATE, &leases_)) != 0) return fail("open", rc);
  if ((rc = mdb_dbi_open(txn, "addrs", MDB_CREATE, &addrs_)) != 0) return fail("open", rc);
  if ((rc = mdb_dbi_open(txn, "addrs6", MDB_CREATE, &addrs6_)) != 0) return fail("open", rc);
  if ((rc = mdb_dbi_open(txn, "taps", MDB_CREATE, &taps_)) != 0) return fail("open", rc);
  if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta_)) != 0) return fail("open", rc);

  // The pools' ranges are recorded; changing one while leases from it exist would hand
  // out addresses that clash with the recorded ones.
  Status recorded =
      RecordRange(txn, "subnet", subnet_.ToString(), leases_, "leases from subnet", "config says");
  if (recorded.ok() && pools_.ipv6) {  // against the leases that hold an IPv6 address
    recorded = RecordRange(txn, "prefix6", pools_.prefix6.ToString(), addrs6_, "IPv6 leases from",
                           "config key ipv6_prefix says");
  }
  if (!recorded.ok()) {
    mdb_txn_abort(txn);
    return recorded;
  }
  MDB_val schema_key = ValOf("schema"), schema_value;
  rc = mdb_get(txn, meta_, &schema_key, &schema_value);
  if (rc != 0 && rc != MDB_NOTFOUND) return fail("read", rc);
  // Schema 2 differs only in its records (version 1, still read): relabelled.
  bool schema2 = rc == 0 && ViewOf(schema_value) == "2";
  if (rc == 0 && ViewOf(schema_value) != kSchema && !schema2) {
    std::string recorded(ViewOf(schema_value));
    mdb_txn_abort(txn);
    return MakeError(ErrorCode::kFailedPrecondition,
                     "lease database " + path_ + " has schema " + recorded +
                         ", this plugin knows " + kSchema +
                         ": use the net-bridge plugin that wrote it, or another db_path");
  }
  if (rc == MDB_NOTFOUND || schema2) {
    if (Status migrated = rc == MDB_NOTFOUND ? MigrateFromSchema1(txn) : Status::Ok();
        !migrated.ok()) {
      mdb_txn_abort(txn);
      return migrated;
    }
    MDB_val new_schema = ValOf(kSchema);
    if ((rc = mdb_put(txn, meta_, &schema_key, &new_schema, 0)) != 0) return fail("write", rc);
  }
  if ((rc = mdb_txn_commit(txn)) != 0) return LmdbError("commit", rc);
  return Status::Ok();
}

Status LeaseStore::RecordRange(MDB_txn* txn, const char* meta_key, const std::string& text,
                               MDB_dbi counted, const char* leases_from, const char* config_says) {
  MDB_val key = ValOf(meta_key), value;
  int rc = mdb_get(txn, meta_, &key, &value);
  if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError("read", rc);
  if (rc == 0 && ViewOf(value) == text) return Status::Ok();
  if (rc == 0) {
    MDB_stat stat{};
    mdb_stat(txn, counted, &stat);
    if (stat.ms_entries > 0) {
      return MakeError(ErrorCode::kFailedPrecondition,
                       "lease database " + path_ + " holds " + std::to_string(stat.ms_entries) +
                           " " + leases_from + " " + std::string(ViewOf(value)) + ", " +
                           config_says + " " + text +
                           ": delete those containers first or use another db_path");
    }
  }
  MDB_val new_value = ValOf(text);
  if ((rc = mdb_put(txn, meta_, &key, &new_value, 0)) != 0) return LmdbError("write", rc);
  return Status::Ok();
}

Status LeaseStore::MigrateFromSchema1(MDB_txn* txn) {
  std::vector<std::pair<std::string, LeaseRecord>> old;  // bare id -> record
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(txn, leases_, &cursor);
  if (rc != 0) return LmdbError("read", rc);
  MDB_val key, value;
  for (rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
    auto lease = DecodeRecord(ViewOf(key), ViewOf(value));
    if (!lease) {
      mdb_cursor_close(cursor);
      return LmdbError("decode", MDB_CORRUPTED);
    }
    old.emplace_back(std::string(ViewOf(key)), std::move(*lease));
  }
  mdb_cursor_close(cursor);
  if (rc != MDB_NOTFOUND) return LmdbError("read", rc);
  for (const auto& [old_key, lease] : old) {
    std::string new_key = ContainerRef{lease.container_namespace, lease.container_id}.Key();
    std::string encoded = EncodeRecord(lease);
    std::string address_key = AddressKey(lease.address);
    MDB_val old_val = ValOf(old_key), new_val = ValOf(new_key), record = ValOf(encoded);
    MDB_val addr_key = ValOf(address_key), tap_key = ValOf(lease.tap_name);
    if ((rc = mdb_del(txn, leases_, &old_val, nullptr)) != 0 ||
        (rc = mdb_put(txn, leases_, &new_val, &record, 0)) != 0 ||
        (rc = mdb_put(txn, addrs_, &addr_key, &new_val, 0)) != 0 ||
        (rc = mdb_put(txn, taps_, &tap_key, &new_val, 0)) != 0) {
      return LmdbError("migrate", rc);
    }
  }
  return Status::Ok();
}

Status LeaseStore::InTransaction(bool write, const std::function<Status(MDB_txn*)>& body) {
  std::lock_guard lock(mutex_);
  MDB_txn* txn = nullptr;
  int rc = mdb_txn_begin(env_, nullptr, write ? 0 : MDB_RDONLY, &txn);
  if (rc != 0) return LmdbError("begin transaction on", rc);
  Status status = body(txn);
  if (!status.ok() || !write) {
    mdb_txn_abort(txn);
    return status;
  }
  if ((rc = mdb_txn_commit(txn)) != 0) return LmdbError("commit to", rc);
  return Status::Ok();
}

// The lowest address in from..to that is neither in the index under `cursor` nor
// `skip`, by one walk over the taken addresses from `from` (IPv4 and IPv6 alike).
template <typename Address, typename Encode, typename Decode>
Result<std::optional<Address>> FindFreeInIndex(
    MDB_cursor* cursor, Address from, Address to, Address skip, Encode encode, Decode decode,
    const std::function<Error(std::string_view, int)>& lmdb_error) {
  Address expected = from == skip ? from + 1 : from;
  if (expected > to) return std::optional<Address>();
  std::string start = encode(expected);
  MDB_val key = ValOf(start), value;
  int rc = mdb_cursor_get(cursor, &key, &value, MDB_SET_RANGE);
  while (true) {
    if (rc == MDB_NOTFOUND) return std::optional<Address>(expected);
    if (rc != 0) return lmdb_error("read", rc);
    std::optional<Address> taken = decode(key);
    if (!taken) return lmdb_error("read", MDB_CORRUPTED);
    if (*taken > expected) return std::optional<Address>(expected);
    if (*taken == expected) {
      expected = *taken + 1;
      if (expected == skip) ++expected;
      if (expected > to) return std::optional<Address>();
    }
    rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT);
  }
}

Result<std::optional<Ipv4>> LeaseStore::FindFreeIn(MDB_cursor* cursor, Ipv4 from, Ipv4 to) {
  return FindFreeInIndex<Ipv4>(cursor, from, to, gateway_, AddressKey, AddressFromKey,
                               [this](std::string_view op, int rc) { return LmdbError(op, rc); });
}

Result<Ipv4> LeaseStore::FindFree(MDB_txn* txn) {
  const Ipv4 first = subnet_.network + 1, last = subnet_.Broadcast() - 1;
  Ipv4 hint = first;
  MDB_val key = ValOf("next"), value;
  if (mdb_get(txn, meta_, &key, &value) == 0) {
    auto stored = AddressFromKey(value);
    if (stored && *stored >= first && *stored <= last) hint = *stored;
  }
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(txn, addrs_, &cursor);
  if (rc != 0) return LmdbError("read", rc);
  auto found = FindFreeIn(cursor, hint, last);
  if (found.ok() && !*found && hint > first) found = FindFreeIn(cursor, first, hint - 1);
  mdb_cursor_close(cursor);
  if (!found.ok()) return found.error();
  if (!*found) {
    return MakeError(ErrorCode::kExhausted,
                     "address pool " + subnet_.ToString() + " is exhausted (" +
                         std::to_string(last - first) +
                         " leases): delete containers, run `beaconbox-ctl gc` to drop stale "
                         "leases, or configure a larger subnet");
  }
  return **found;
}

Result<std::optional<Ipv6>> LeaseStore::FindFreeIn6(MDB_cursor* cursor, Ipv6 from, Ipv6 to) {
  // The gateway lies below the range (config checks it): skipping it changes nothing.
  return FindFreeInIndex<Ipv6>(cursor, from, to, pools_.gateway6, AddressKey6, AddressFromKey6,
                               [this](std::string_view op, int rc) { return LmdbError(op, rc); });
}

Result<Ipv6> LeaseStore::FindFree6(MDB_txn* txn) {
  // The gateway lies below the range (config checks it), so it is never met here.
  const LeaseRange6 range = LeaseRangeOf(pools_.prefix6);
  Ipv6 hint = range.first;
  MDB_val key = ValOf("next6"), value;
  if (mdb_get(txn, meta_, &key, &value) == 0) {
    auto stored = AddressFromKey6(value);
    if (stored && *stored >= range.first && *stored <= range.last) hint = *stored;
  }
  MDB_cursor* cursor = nullptr;
  int rc = mdb_cursor_open(txn, addrs6_, &cursor);
  if (rc != 0) return LmdbError("read", rc);
  auto found = FindFreeIn6(cursor, hint, range.last);
  if (found.ok() && !*found && hint > range.first)
    found = FindFreeIn6(cursor, range.first, hint - 1);
  mdb_cursor_close(cursor);
  if (!found.ok()) return found.error();
  if (!*found) {
    Ipv6 size = range.last - range.first + 1;
    return MakeError(ErrorCode::kExhausted,
                     "IPv6 lease range " + FormatIpv6(range.first) + " - " +
                         FormatIpv6(range.last) + " of " + pools_.prefix6.ToString() +
                         " is exhausted (" + std::to_string(uint64_t(size)) +
                         " leases): delete containers, run `beaconbox-ctl gc` to drop stale "
                         "leases, or configure a shorter ipv6_prefix");
  }
  return **found;
}

Status LeaseStore::IndexAddress(MDB_txn* txn, const LeaseRecord& lease, const std::string& key,
                                int family) {
  std::string address_key = family == 4 ? AddressKey(lease.address) : AddressKey6(lease.address6);
  std::string next_key =
      family == 4 ? AddressKey(lease.address + 1) : AddressKey6(lease.address6 + 1);
  MDB_val addr_key = ValOf(address_key), id_value = ValOf(key);
  MDB_val meta_key = ValOf(family == 4 ? "next" : "next6"), next_value = ValOf(next_key);
  int rc = 0;
  if ((rc = mdb_put(txn, family == 4 ? addrs_ : addrs6_, &addr_key, &id_value, MDB_NOOVERWRITE)) !=
          0 ||
      (rc = mdb_put(txn, meta_, &meta_key, &next_value, 0)) != 0) {
    return LmdbError("write", rc);
  }
  return Status::Ok();
}

Result<LeaseStore::Acquired> LeaseStore::Acquire(
    const ContainerRef& container, const LeaseOwner& owner,
    const std::function<bool(const std::string&)>& tap_name_taken) {
  const std::string& container_id = container.id;
  if (container_id.empty() || container_id.size() > kMaxIdLength ||
      container.container_namespace.size() > kMaxIdLength ||
      container.container_namespace.find('/') != std::string::npos) {
    return MakeError(ErrorCode::kInvalidArgument,
                     "container id must be 1.." + std::to_string(kMaxIdLength) +
                         " bytes and the namespace must not contain '/'");
  }
  const std::string container_key = container.Key();
  Acquired result;
  Status status = InTransaction(true, [&](MDB_txn* txn) -> Status {
    MDB_val key = ValOf(container_key), value;
    int rc = mdb_get(txn, leases_, &key, &value);
    if (rc == 0) {
      auto existing = DecodeRecord(container_key, ViewOf(value));
      if (!existing) return LmdbError("decode", MDB_CORRUPTED);
      result.lease = *existing;
      // A family enabled since (or a lease of an older plugin) gets its address now.
      bool add4 = pools_.ipv4 && existing->address == 0;
      bool add6 = pools_.ipv6 && existing->address6 == 0;
      if (add4) {
        BBX_ASSIGN_OR_RETURN(result.lease.address, FindFree(txn));
        BBX_RETURN_IF_ERROR(IndexAddress(txn, result.lease, container_key, 4));
      }
      if (add6) {
        BBX_ASSIGN_OR_RETURN(result.lease.address6, FindFree6(txn));
        BBX_RETURN_IF_ERROR(IndexAddress(txn, result.lease, container_key, 6));
      }
      if (add4 || add6 || existing->owner_pid != owner.pid ||
          existing->owner_start_time != owner.start_time) {
        result.lease.owner_pid = owner.pid;
        result.lease.owner_start_time = owner.start_time;
        std::string encoded = EncodeRecord(result.lease);
        MDB_val new_value = ValOf(encoded);
        if ((rc = mdb_put(txn, leases_, &key, &new_value, 0)) != 0) return LmdbError("write", rc);
      }
      return Status::Ok();
    }
    if (rc != MDB_NOTFOUND) return LmdbError("read", rc);

    LeaseRecord& lease = result.lease;
    lease.container_id = container_id;
    lease.container_namespace = container.container_namespace;
    lease.owner_pid = owner.pid;
    lease.owner_start_time = owner.start_time;
    lease.created_unix = static_cast<int64_t>(std::time(nullptr));
    if (pools_.ipv4) {
      BBX_ASSIGN_OR_RETURN(lease.address, FindFree(txn));
      BBX_RETURN_IF_ERROR(IndexAddress(txn, lease, container_key, 4));
    }
    if (pools_.ipv6) {
      BBX_ASSIGN_OR_RETURN(lease.address6, FindFree6(txn));
      BBX_RETURN_IF_ERROR(IndexAddress(txn, lease, container_key, 6));
    }
    for (uint32_t attempt = 0;; ++attempt) {
      if (attempt == 64)
        return MakeError(ErrorCode::kInternal, "no free TAP name for " + container.Name());
      lease.tap_name = TapNameFor(container, attempt);
      if (tap_name_taken && tap_name_taken(lease.tap_name)) continue;
      MDB_val tap_key = ValOf(lease.tap_name), id_value = ValOf(container_key);
      rc = mdb_put(txn, taps_, &tap_key, &id_value, MDB_NOOVERWRITE);
      if (rc == 0) break;
      if (rc != MDB_KEYEXIST) return LmdbError("write", rc);
    }
    std::string encoded = EncodeRecord(lease);
    MDB_val record = ValOf(encoded);
    if ((rc = mdb_put(txn, leases_, &key, &record, MDB_NOOVERWRITE)) != 0) {
      return LmdbError("write", rc);
    }
    result.created = true;
    return Status::Ok();
  });
  if (!status.ok()) return status.error();
  return result;
}

Result<std::optional<LeaseRecord>> LeaseStore::Release(const ContainerRef& container,
                                                       const LeaseRecord* only_if) {
  const std::string container_key = container.Key();
  std::optional<LeaseRecord> released;
  Status status = InTransaction(true, [&](MDB_txn* txn) -> Status {
    MDB_val key = ValOf(container_key), value;
    int rc = mdb_get(txn, leases_, &key, &value);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc != 0) return LmdbError("read", rc);
    auto lease = DecodeRecord(container_key, ViewOf(value));
    if (!lease) return LmdbError("decode", MDB_CORRUPTED);
    if (only_if != nullptr &&
        (lease->owner_pid != only_if->owner_pid ||
         lease->owner_start_time != only_if->owner_start_time ||
         lease->created_unix != only_if->created_unix || lease->address != only_if->address ||
         lease->address6 != only_if->address6)) {
      return Status::Ok();
    }
    std::string address_key = AddressKey(lease->address);
    std::string address_key6 = AddressKey6(lease->address6);
    MDB_val addr_key = ValOf(address_key), addr_key6 = ValOf(address_key6),
            tap_key = ValOf(lease->tap_name);
    if ((rc = mdb_del(txn, leases_, &key, nullptr)) != 0) return LmdbError("delete from", rc);
    // The index entries go only if they still point at this id (both addresses in
    // this one transaction).
    for (auto [dbi, index_key] : {std::pair{addrs_, &addr_key}, std::pair{addrs6_, &addr_key6},
                                  std::pair{taps_, &tap_key}}) {
      MDB_val owner;
      if (mdb_get(txn, dbi, index_key, &owner) == 0 && ViewOf(owner) == container_key) {
        if ((rc = mdb_del(txn, dbi, index_key, nullptr)) != 0) return LmdbError("delete from", rc);
      }
    }
    released = std::move(*lease);
    return Status::Ok();
  });
  if (!status.ok()) return status.error();
  return released;
}

Result<std::vector<LeaseRecord>> LeaseStore::List() {
  std::vector<LeaseRecord> leases;
  Status status = InTransaction(false, [&](MDB_txn* txn) -> Status {
    MDB_cursor* cursor = nullptr;
    int rc = mdb_cursor_open(txn, leases_, &cursor);
    if (rc != 0) return LmdbError("read", rc);
    MDB_val key, value;
    for (rc = mdb_cursor_get(cursor, &key, &value, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &value, MDB_NEXT)) {
      auto lease = DecodeRecord(ViewOf(key), ViewOf(value));
      if (!lease) {
        mdb_cursor_close(cursor);
        return LmdbError("decode", MDB_CORRUPTED);
      }
      leases.push_back(std::move(*lease));
    }
    mdb_cursor_close(cursor);
    return rc == MDB_NOTFOUND ? Status::Ok() : Status(LmdbError("read", rc));
  });
  if (!status.ok()) return status.error();
  return leases;
}

Result<std::optional<LeaseRecord>> LeaseStore::Find(const ContainerRef& container) {
  const std::string container_key = container.Key();
  std::optional<LeaseRecord> found;
  Status status = InTransaction(false, [&](MDB_txn* txn) -> Status {
    MDB_val key = ValOf(container_key), value;
    int rc = mdb_get(txn, leases_, &key, &value);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc != 0) return LmdbError("read", rc);
    found = DecodeRecord(container_key, ViewOf(value));
    return found ? Status::Ok() : Status(LmdbError("decode", MDB_CORRUPTED));
  });
  if (!status.ok()) return status.error();
  return found;
}

Result<size_t> LeaseStore::Entries(MDB_dbi dbi) {
  size_t count = 0;
  Status status = InTransaction(false, [&](MDB_txn* txn) -> Status {
    MDB_stat stat{};
    int rc = mdb_stat(txn, dbi, &stat);
    if (rc != 0) return LmdbError("read", rc);
    count = stat.ms_entries;
    return Status::Ok();
  });
  if (!status.ok()) return status.error();
  return count;
}

Result<size_t> LeaseStore::Count() { return Entries(leases_); }

Result<size_t> LeaseStore::CountIpv4() { return Entries(addrs_); }

Result<std::string> LeaseStore::Meta(const std::string& key_text) {
  std::string text;
  Status status = InTransaction(false, [&](MDB_txn* txn) -> Status {
    MDB_val key = ValOf(key_text), value;
    int rc = mdb_get(txn, meta_, &key, &value);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc != 0) return LmdbError("read", rc);
    text = std::string(ViewOf(value));
    return Status::Ok();
  });
  if (!status.ok()) return status.error();
  return text;
}

Status LeaseStore::SetMeta(const std::string& key_text, const std::string& text) {
  return InTransaction(true, [&](MDB_txn* txn) -> Status {
    MDB_val key = ValOf(key_text);
    int rc = 0;
    if (text.empty()) {
      rc = mdb_del(txn, meta_, &key, nullptr);
      if (rc == MDB_NOTFOUND) rc = 0;
    } else {
      MDB_val value = ValOf(text);
      rc = mdb_put(txn, meta_, &key, &value, 0);
    }
    return rc == 0 ? Status::Ok() : LmdbError("write", rc);
  });
}

}  // namespace beaconbox::net
