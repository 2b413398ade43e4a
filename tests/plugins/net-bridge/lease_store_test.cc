#include "plugins/net-bridge/lease_store.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "tests/plugins/net-bridge/test_util.h"

namespace beaconbox::net {
namespace {

using testing::TempDir;

Subnet MustSubnet(const char* text) { return *ParseSubnet(text); }

class LeaseStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("bbx-lease-test");
    ASSERT_FALSE(dir_.empty());
    path_ = dir_ + "/state/network.db";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::unique_ptr<LeaseStore> OpenStore(const char* subnet = "10.88.0.0/29") {
    Subnet parsed = MustSubnet(subnet);
    auto store = LeaseStore::Open(path_, parsed, parsed.network + 1);
    EXPECT_TRUE(store.ok()) << store.error().message;
    return store.ok() ? std::move(*store) : nullptr;
  }
  LeaseOwner Me() { return CurrentOwner(::getpid()); }

  std::string dir_, path_;
};

TEST_F(LeaseStoreTest, ExhaustionIsAClearError) {
  auto store = OpenStore("10.88.0.0/29");  // .1 gateway, .2 - .6 usable
  ASSERT_TRUE(store);
  std::set<std::string> addresses;
  for (int i = 0; i < 5; ++i) {
    auto acquired = store->Acquire({"default", "c" + std::to_string(i)}, Me());
    ASSERT_TRUE(acquired.ok()) << acquired.error().message;
    EXPECT_TRUE(acquired->created);
    addresses.insert(FormatIpv4(acquired->lease.address));
  }
  EXPECT_EQ(addresses, (std::set<std::string>{"10.88.0.2", "10.88.0.3", "10.88.0.4", "10.88.0.5",
                                              "10.88.0.6"}));
  auto sixth = store->Acquire({"default", "c5"}, Me());
  ASSERT_FALSE(sixth.ok());
  EXPECT_EQ(sixth.error().code, ErrorCode::kExhausted);
  EXPECT_NE(sixth.error().message.find("10.88.0.0/29 is exhausted"), std::string::npos)
      << sixth.error().message;
  EXPECT_EQ(*store->Count(), 5u);
}

TEST_F(LeaseStoreTest, ReleasedAddressIsReused) {
  auto store = OpenStore("10.88.0.0/29");
  ASSERT_TRUE(store);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store->Acquire({"", "c" + std::to_string(i)}, Me()).ok());
  auto released = store->Release({"", "c2"});
  ASSERT_TRUE(released.ok());
  ASSERT_TRUE(released->has_value());
  Ipv4 freed = (*released)->address;
  auto again = store->Acquire({"", "new"}, Me());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->lease.address, freed);
}

TEST_F(LeaseStoreTest, AllocatesAfterTheLastOneBeforeReusing) {
  auto store = OpenStore("10.88.0.0/24");
  ASSERT_TRUE(store);
  auto a = store->Acquire({"", "a"}, Me());
  auto b = store->Acquire({"", "b"}, Me());
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(store->Release({"", "a"}).ok());
  auto c = store->Acquire({"", "c"}, Me());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(FormatIpv4(a->lease.address), "10.88.0.2");
  EXPECT_EQ(FormatIpv4(b->lease.address), "10.88.0.3");
  EXPECT_EQ(FormatIpv4(c->lease.address), "10.88.0.4");
}

TEST_F(LeaseStoreTest, ReleasingTwiceOrUnknownIsHarmless) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Acquire({"", "a"}, Me()).ok());
  auto first = store->Release({"", "a"});
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->has_value());
  auto second = store->Release({"", "a"});
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->has_value());
  auto unknown = store->Release({"", "never-seen"});
  ASSERT_TRUE(unknown.ok());
  EXPECT_FALSE(unknown->has_value());
  EXPECT_EQ(*store->Count(), 0u);
}

TEST_F(LeaseStoreTest, AcquireIsIdempotentPerContainer) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  auto first = store->Acquire({"ns", "a"}, Me());
  auto second = store->Acquire({"ns", "a"}, Me());
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(first->created);
  EXPECT_FALSE(second->created);
  EXPECT_EQ(first->lease.address, second->lease.address);
  EXPECT_EQ(first->lease.tap_name, second->lease.tap_name);
  // The same id in another namespace is another container: its own lease.
  auto other_namespace = store->Acquire({"other", "a"}, Me());
  ASSERT_TRUE(other_namespace.ok()) << other_namespace.error().message;
  EXPECT_TRUE(other_namespace->created);
  EXPECT_NE(other_namespace->lease.address, first->lease.address);
  EXPECT_NE(other_namespace->lease.tap_name, first->lease.tap_name);
  auto released = store->Release({"ns", "a"});
  ASSERT_TRUE(released.ok() && released->has_value());
  auto still = store->Find({"other", "a"});
  ASSERT_TRUE(still.ok() && still->has_value());
}

TEST_F(LeaseStoreTest, LeasesPersistAcrossReopen) {
  Ipv4 address = 0;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    auto acquired = store->Acquire({"k8s.io", "persisted"}, Me());
    ASSERT_TRUE(acquired.ok());
    address = acquired->lease.address;
  }
  auto store = OpenStore();
  ASSERT_TRUE(store);
  auto leases = store->List();
  ASSERT_TRUE(leases.ok());
  ASSERT_EQ(leases->size(), 1u);
  const LeaseRecord& lease = leases->front();
  EXPECT_EQ(lease.container_id, "persisted");
  EXPECT_EQ(lease.container_namespace, "k8s.io");
  EXPECT_EQ(lease.address, address);
  EXPECT_EQ(lease.owner_pid, ::getpid());
  EXPECT_EQ(lease.tap_name, TapNameFor({"k8s.io", "persisted"}));
  EXPECT_GT(lease.created_unix, 1600000000);
  // The next allocation continues after the persisted one.
  auto next = store->Acquire({"", "next"}, Me());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->lease.address, address + 1);
}

// Rewrites a schema-2 file as schema 1 wrote it (leases keyed by the bare id, no
// "schema" in meta), with LMDB directly.
void DowngradeToSchema1(const std::string& path, const std::string& key,
                        const std::string& bare_id) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 4);
  mdb_env_set_mapsize(env, LeaseStore::kMapSize);
  ASSERT_EQ(mdb_env_open(env, path.c_str(), MDB_NOSUBDIR, 0600), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi leases, addrs, taps, meta;
  ASSERT_EQ(mdb_dbi_open(txn, "leases", 0, &leases), 0);
  ASSERT_EQ(mdb_dbi_open(txn, "addrs", 0, &addrs), 0);
  ASSERT_EQ(mdb_dbi_open(txn, "taps", 0, &taps), 0);
  ASSERT_EQ(mdb_dbi_open(txn, "meta", 0, &meta), 0);
  auto val = [](const std::string& text) {
    return MDB_val{text.size(), const_cast<char*>(text.data())};
  };
  MDB_val old_key = val(key), new_key = val(bare_id), record;
  ASSERT_EQ(mdb_get(txn, leases, &old_key, &record), 0);
  std::string record_bytes(static_cast<const char*>(record.mv_data), record.mv_size);
  MDB_val record_copy = val(record_bytes);
  ASSERT_EQ(mdb_del(txn, leases, &old_key, nullptr), 0);
  ASSERT_EQ(mdb_put(txn, leases, &new_key, &record_copy, 0), 0);
  for (MDB_dbi index : {addrs, taps}) {  // index values point at the bare id
    MDB_cursor* cursor = nullptr;
    ASSERT_EQ(mdb_cursor_open(txn, index, &cursor), 0);
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
      ASSERT_EQ(mdb_cursor_put(cursor, &k, &new_key, MDB_CURRENT), 0);
    }
    mdb_cursor_close(cursor);
  }
  const std::string schema_key = "schema";  // MDB_val borrows; the string must outlive it
  MDB_val schema = val(schema_key);
  ASSERT_EQ(mdb_del(txn, meta, &schema, nullptr), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

TEST_F(LeaseStoreTest, ASchemaOneFileIsMigratedToNamespaceKeys) {
  LeaseRecord before;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    auto acquired = store->Acquire({"k8s.io", "old"}, Me());
    ASSERT_TRUE(acquired.ok()) << acquired.error().message;
    before = acquired->lease;
  }
  DowngradeToSchema1(path_, "k8s.io/old", "old");
  auto store = OpenStore();
  ASSERT_TRUE(store);
  auto found = store->Find({"k8s.io", "old"});
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->address, before.address);
  EXPECT_EQ((*found)->tap_name, before.tap_name);  // the device keeps its name
  // The same id in another namespace is another container now.
  auto other = store->Acquire({"default", "old"}, Me());
  ASSERT_TRUE(other.ok()) << other.error().message;
  EXPECT_NE(other->lease.address, before.address);
  auto released = store->Release({"k8s.io", "old"});
  ASSERT_TRUE(released.ok() && released->has_value());
  EXPECT_EQ(*store->Count(), 1u);
}

TEST_F(LeaseStoreTest, SubnetChangeWithLeasesIsRefused) {
  {
    auto store = OpenStore("10.88.0.0/24");
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Acquire({"", "a"}, Me()).ok());
  }
  Subnet other = MustSubnet("10.99.0.0/24");
  auto store = LeaseStore::Open(path_, other, other.network + 1);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("10.88.0.0/24"), std::string::npos) << store.error().message;
}

AddressPools DualStack(const char* subnet, const char* prefix6, bool ipv4 = true) {
  AddressPools pools;
  pools.ipv4 = ipv4;
  pools.subnet = MustSubnet(subnet);
  pools.gateway = pools.subnet.network + 1;
  pools.ipv6 = true;
  pools.prefix6 = *ParsePrefix6(prefix6);
  pools.gateway6 = pools.prefix6.network + 1;
  return pools;
}

TEST_F(LeaseStoreTest, ADualStackLeaseHoldsBothAddressesAndReleaseFreesBoth) {
  auto opened = LeaseStore::Open(path_, DualStack("10.88.0.0/29", "fd00:1::/64"));
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto& store = *opened;
  auto a = store->Acquire({"default", "a"}, Me());
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(FormatIpv4(a->lease.address), "10.88.0.2");
  EXPECT_EQ(FormatIpv6(a->lease.address6), "fd00:1::100");  // the range starts at ::100
  auto b = store->Acquire({"default", "b"}, Me());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(FormatIpv6(b->lease.address6), "fd00:1::101");
  auto found = store->Find({"default", "a"});
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->address6, a->lease.address6);
  auto released = store->Release({"default", "a"});
  ASSERT_TRUE(released.ok() && released->has_value());
  EXPECT_EQ((*released)->address6, a->lease.address6);
  // Both addresses are free again: a store whose hints point past them wraps to them.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(store->Acquire({"", "f" + std::to_string(i)}, Me()).ok());
  auto wrapped = store->Acquire({"default", "again"}, Me());
  ASSERT_TRUE(wrapped.ok()) << wrapped.error().message;
  EXPECT_EQ(wrapped->lease.address, a->lease.address);  // the only free IPv4 address
  auto listed = store->List();
  ASSERT_TRUE(listed.ok());
  std::set<std::string> v6;
  for (const LeaseRecord& lease : *listed) v6.insert(FormatIpv6(lease.address6));
  EXPECT_EQ(v6.size(), listed->size());  // no IPv6 address twice
}

TEST_F(LeaseStoreTest, AnExhaustedIpv6RangeIsOneClearErrorAndTakesNoIpv4Address) {
  // A /126 keeps ::0 and ::1 (the gateway): two leases, ::2 and ::3.
  auto opened = LeaseStore::Open(path_, DualStack("10.88.0.0/24", "fd00:2::/126"));
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto& store = *opened;
  ASSERT_TRUE(store->Acquire({"", "a"}, Me()).ok());
  ASSERT_TRUE(store->Acquire({"", "b"}, Me()).ok());
  auto third = store->Acquire({"", "c"}, Me());
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, ErrorCode::kExhausted);
  EXPECT_NE(third.error().message.find("IPv6 lease range fd00:2::2 - fd00:2::3 of fd00:2::/126 is "
                                       "exhausted (2 leases)"),
            std::string::npos)
      << third.error().message;
  EXPECT_EQ(third.error().message.find('\n'), std::string::npos);
  EXPECT_EQ(*store->Count(), 2u);
  // The failed transaction took nothing: the next IPv4 address is still .4.
  ASSERT_TRUE(store->Release({"", "a"}).ok());
  auto c = store->Acquire({"", "c"}, Me());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(FormatIpv4(c->lease.address), "10.88.0.4");
  EXPECT_EQ(FormatIpv6(c->lease.address6), "fd00:2::2");
}

TEST_F(LeaseStoreTest, AnIpv4LeaseOfAnOlderConfigGetsItsIpv6AddressAtTheNextAcquire) {
  LeaseRecord before;
  {
    auto store = OpenStore("10.88.0.0/24");  // IPv4 only, as the plugin was before
    ASSERT_TRUE(store);
    auto acquired = store->Acquire({"default", "old"}, Me());
    ASSERT_TRUE(acquired.ok());
    before = acquired->lease;
    EXPECT_EQ(before.address6, 0);
  }
  auto opened = LeaseStore::Open(path_, DualStack("10.88.0.0/24", "fd00:3::/64"));
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  auto again = (*opened)->Acquire({"default", "old"}, Me());
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->lease.address, before.address);
  EXPECT_EQ(again->lease.tap_name, before.tap_name);
  EXPECT_EQ(FormatIpv6(again->lease.address6), "fd00:3::100");
  auto found = (*opened)->Find({"default", "old"});
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->address6, again->lease.address6);  // stored, not only returned
}

TEST_F(LeaseStoreTest, Ipv6OnlyLeasesHaveNoIpv4AddressAndPrefixChangeIsRefused) {
  {
    auto opened = LeaseStore::Open(path_, DualStack("10.88.0.0/29", "fd00:4::/64", false));
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    // More leases than the IPv4 /29 holds: IPv4 is not used at all.
    for (int i = 0; i < 8; ++i) {
      auto acquired = (*opened)->Acquire({"", "v6-" + std::to_string(i)}, Me());
      ASSERT_TRUE(acquired.ok()) << acquired.error().message;
      EXPECT_EQ(acquired->lease.address, 0u);
      EXPECT_NE(acquired->lease.address6, 0);
    }
  }
  auto changed = LeaseStore::Open(path_, DualStack("10.88.0.0/29", "fd00:5::/64", false));
  ASSERT_FALSE(changed.ok());
  EXPECT_NE(changed.error().message.find("8 IPv6 leases from fd00:4::/64, config key ipv6_prefix "
                                         "says fd00:5::/64"),
            std::string::npos)
      << changed.error().message;
}

// Eight separate processes allocate from one /21 (2045 addresses) at once, 256
// each: exactly 2045 succeed, all distinct, three get a clean exhaustion error.
TEST_F(LeaseStoreTest, ConcurrentProcessesNeverShareAnAddress) {
  constexpr int kProcesses = 8, kEach = 256;
  Subnet subnet = MustSubnet("10.88.0.0/21");
  {  // create the file first so children race only on allocation
    auto store = LeaseStore::Open(path_, subnet, subnet.network + 1);
    ASSERT_TRUE(store.ok()) << store.error().message;
  }
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::ofstream out(dir_ + "/child-" + std::to_string(p));
      auto store = LeaseStore::Open(path_, subnet, subnet.network + 1);
      if (!store.ok()) {
        out << "error " << store.error().message << "\n";
        ::_exit(2);
      }
      for (int i = 0; i < kEach; ++i) {
        std::string id = "p" + std::to_string(p) + "-" + std::to_string(i);
        auto acquired = (*store)->Acquire({"", id}, CurrentOwner(::getpid()));
        if (acquired.ok()) {
          out << id << " " << FormatIpv4(acquired->lease.address) << "\n";
        } else if (acquired.error().code == ErrorCode::kExhausted) {
          out << id << " exhausted\n";
        } else {
          out << id << " error " << acquired.error().message << "\n";
        }
      }
      out.close();
      ::_exit(0);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::map<std::string, std::string> owner_of_address;
  int exhausted = 0, errors = 0;
  for (int p = 0; p < kProcesses; ++p) {
    std::ifstream in(dir_ + "/child-" + std::to_string(p));
    std::string id, result;
    while (in >> id >> result) {
      if (result == "exhausted") {
        ++exhausted;
      } else if (result == "error") {
        std::string rest;
        std::getline(in, rest);
        ADD_FAILURE() << id << ": " << rest;
        ++errors;
      } else {
        auto [it, inserted] = owner_of_address.emplace(result, id);
        EXPECT_TRUE(inserted) << result << " given to " << it->second << " and " << id;
      }
    }
  }
  EXPECT_EQ(owner_of_address.size(), 2045u);
  EXPECT_EQ(exhausted, kProcesses * kEach - 2045);
  EXPECT_EQ(errors, 0);
  auto store = LeaseStore::Open(path_, subnet, subnet.network + 1);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(*(*store)->Count(), 2045u);
}

TEST_F(LeaseStoreTest, CorruptDatabaseIsAOneLineError) {
  std::filesystem::create_directories(dir_ + "/state");
  for (size_t size : {size_t(16), size_t(16384)}) {
    {
      std::ofstream garbage(path_, std::ios::trunc);
      for (size_t i = 0; i < size; ++i) garbage.put(char('A' + i % 26));
    }
    Subnet subnet = MustSubnet("10.88.0.0/16");
    auto store = LeaseStore::Open(path_, subnet, subnet.network + 1);
    ASSERT_FALSE(store.ok()) << "garbage of " << size << " bytes was accepted";
    const std::string& message = store.error().message;
    EXPECT_NE(message.find(path_), std::string::npos) << message;
    EXPECT_NE(message.find("move it"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
    std::filesystem::remove(path_ + "-lock");
  }
}

TEST_F(LeaseStoreTest, DirectoryInPlaceOfTheFileIsAClearError) {
  std::filesystem::create_directories(path_);
  Subnet subnet = MustSubnet("10.88.0.0/16");
  auto store = LeaseStore::Open(path_, subnet, subnet.network + 1);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find(path_), std::string::npos) << store.error().message;
  EXPECT_NE(store.error().message.find("db_path"), std::string::npos) << store.error().message;
}

// Root reads everything, so the check runs in a child that drops to nobody.
TEST_F(LeaseStoreTest, UnreadableDatabaseIsAClearError) {
  { ASSERT_TRUE(OpenStore()); }
  ASSERT_EQ(::chmod(path_.c_str(), 0), 0);
  ASSERT_EQ(::chmod((path_ + "-lock").c_str(), 0), 0);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(pipe_fds[0]);
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) _exit(3);
    Subnet subnet = MustSubnet("10.88.0.0/29");
    auto store = LeaseStore::Open(path_, subnet, subnet.network + 1);
    std::string message = store.ok() ? "OPENED" : store.error().message;
    (void)!::write(pipe_fds[1], message.data(), message.size());
    _exit(0);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buffer[512];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buffer, sizeof(buffer))) > 0) message.append(buffer, n);
  ::close(pipe_fds[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child could not drop privileges";
  EXPECT_NE(message.find(path_), std::string::npos) << message;
  EXPECT_NE(message.find("Permission denied"), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST(LeaseNamesTest, TapNamesFitIfnamsizAndMacsAreLocal) {
  std::set<std::string> names;
  for (int i = 0; i < 1000; ++i) {
    std::string id = "container-" + std::to_string(i);
    std::string tap = TapNameFor({"default", id});
    EXPECT_EQ(tap.size(), 15u);
    EXPECT_TRUE(tap.starts_with("beacon-"));
    EXPECT_TRUE(IsValidInterfaceName(tap));
    names.insert(tap);
    EXPECT_EQ(TapNameFor({"default", id}), tap);
    EXPECT_NE(TapNameFor({"default", id}, 1), tap);
    EXPECT_NE(TapNameFor({"k8s.io", id}), tap) << "the namespace is part of the name's hash";
    std::string mac = MacFor({"default", id});
    EXPECT_EQ(mac.size(), 17u);
    EXPECT_TRUE(mac.starts_with("02:"));
    EXPECT_EQ(MacFor({"default", id}), mac);
    EXPECT_NE(MacFor({"k8s.io", id}), mac);
  }
  EXPECT_EQ(names.size(), 1000u);
}

TEST(LeaseOwnerTest, DeadOwnerIsNotAlive) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(0);
  ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);
  LeaseRecord lease;
  lease.owner_pid = pid;
  lease.owner_start_time = 12345;
  EXPECT_FALSE(OwnerAlive(lease));
  LeaseOwner me = CurrentOwner(::getpid());
  EXPECT_NE(me.start_time, 0u);
  lease.owner_pid = ::getpid();
  lease.owner_start_time = me.start_time;
  EXPECT_TRUE(OwnerAlive(lease));
  lease.owner_start_time = me.start_time + 1;  // same pid, another process: reused
  EXPECT_FALSE(OwnerAlive(lease));
}

}  // namespace
}  // namespace beaconbox::net
