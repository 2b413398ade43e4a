#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz corpora (tests/fuzz/corpus/<target>/seed-*).

Run from the repository root after a build (it uses protoc and the containerd .proto
files the build prepares):  python3 tests/fuzz/make_seeds.py [_build]
Seeds are small valid inputs; libFuzzer's merges (make fuzz) add the rest to the
corpora. Re-running rewrites the seeds only.
"""
import json
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "_build"))
CTRD_SRC = os.path.join(BUILD, "containerd-proto", "src")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
SHIM_PROTO = "github.com/containerd/containerd/runtime/v2/task/shim.proto"


def encode(message, text, proto, includes):
    args = ["protoc", "--encode=" + message] + ["-I" + i for i in includes] + [proto]
    return subprocess.run(args, input=text.encode(), check=True, capture_output=True).stdout


def wire(message, text):
    return encode("beaconbox.ttrpc.wire." + message, text, "common/ttrpc/wire.proto", [ROOT])


def guest(message, text):
    return encode("beaconbox.guest.v1." + message, text, "beaconbox/guest/v1/guest.proto",
                  [os.path.join(ROOT, "common", "proto")])


def task(message, text):
    return encode("containerd.task.v2." + message, text, SHIM_PROTO, [CTRD_SRC, "/usr/include"])


def frame(stream_id, kind, flags, payload):
    return struct.pack(">IIBB", len(payload), stream_id, kind, flags) + payload


REQUEST, RESPONSE, DATA = 1, 2, 3
REMOTE_CLOSED, REMOTE_OPEN, NO_DATA = 1, 2, 4


def write(target, name, data):
    directory = os.path.join(CORPUS, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "seed-" + name), "wb") as f:
        f.write(data)


def request(service, method, payload=b"", extra=""):
    return wire("Request", 'service: "%s" method: "%s" payload: "%s" %s' %
                (service, method, payload.decode(), extra))


def response(code=0, message="", payload=""):
    return wire("Response", 'status { code: %d message: "%s" } payload: "%s"' %
                (code, message, payload))


def ttrpc_server_seeds():
    s = "fuzz.Echo"
    write("ttrpc_server", "unary", frame(1, REQUEST, 0, request(
        s, "Unary", b"hello", 'timeout_nano: 1000000000 metadata { key: "key" value: "v" }')))
    write("ttrpc_server", "each-method", b"".join(
        frame(1 + 2 * i, REQUEST, 0, request(s, m, b"x"))
        for i, m in enumerate(["Unary", "Fail", "Throw", "Oversize", "ServerStream", "Nope"])))
    write("ttrpc_server", "bidi", frame(1, REQUEST, REMOTE_OPEN, request(s, "Bidi")) +
          frame(1, DATA, 0, b"one") + frame(1, DATA, 0, b"two") +
          frame(1, DATA, REMOTE_CLOSED | NO_DATA, b""))
    write("ttrpc_server", "client-stream",
          frame(3, REQUEST, REMOTE_OPEN, request(s, "ClientStream")) +
          frame(3, DATA, 0, b"a") + frame(3, DATA, REMOTE_CLOSED, b"b"))
    write("ttrpc_server", "id-reuse", frame(5, REQUEST, 0, request(s, "Unary")) +
          frame(3, REQUEST, 0, request(s, "Unary")) + frame(4, REQUEST, 0, request(s, "Unary")))
    write("ttrpc_server", "oversize", struct.pack(">IIBB", 1 << 20, 1, REQUEST, 0) + b"x" * 64 +
          frame(3, REQUEST, 0, request(s, "Unary")))
    write("ttrpc_server", "garbage", frame(1, REQUEST, 0, b"\xff\xff\xff") +
          frame(3, REQUEST, 0, request(s, "Unary")))
    write("ttrpc_server", "cut", frame(1, REQUEST, 0, request(s, "Unary"))[:-3])


def ttrpc_client_seeds():
    # The client's calls: 1 server stream, 3 bidirectional stream, 5 unary.
    write("ttrpc_client", "answers", frame(1, DATA, 0, b"m1") + frame(1, DATA, 0, b"m2") +
          frame(1, DATA, REMOTE_CLOSED | NO_DATA, b"") + frame(3, DATA, 0, b"echo") +
          frame(3, RESPONSE, 0, response(payload="final")) + frame(5, RESPONSE, 0,
                                                                   response(payload="ok")))
    write("ttrpc_client", "errors", frame(5, RESPONSE, 0, response(5, "not found")) +
          frame(1, RESPONSE, 0, response(99, "unknown code")) + frame(3, RESPONSE, 0, b"\xff"))
    write("ttrpc_client", "unary-data", frame(5, DATA, 0, b"stray") + frame(7, RESPONSE, 0,
                                                                             response()))
    write("ttrpc_client", "oversize", struct.pack(">IIBB", 1 << 20, 5, RESPONSE, 0) + b"x" * 32)
    write("ttrpc_client", "flood", b"".join(frame(1, DATA, 0, b"%d" % i) for i in range(300)))


def record(key, payload=b"", code=0):
    return struct.pack("<BBH", key, code, len(payload)) + payload


# Indexes into kKeys (guest_response_fuzz.cc).
(HELLO, NETWORK, BUNDLE, WRITE_INPUT, OUT_INIT_1, OUT_INIT_2, OUT_EXEC_1, OUT_EXEC_2, CREATE,
 START, EXEC, WAIT_C1, WAIT_E1, WAIT_C2, PIDS, KILL, RESIZE, PAUSE, RESUME, DELETE) = range(20)


def guest_response_seeds():
    everything = 0x1 | 0x2 | 0x4
    write("guest_response", "happy", bytes([everything]))
    write("guest_response", "valid-answers", bytes([everything | 0x8]) +
          record(HELLO, guest("HelloResponse", 'protocol_version: 1 agent_version: "v" '
                                               'kernel_release: "6.1" boot_to_ready_ms: 5')) +
          record(BUNDLE, guest("CreateBundleResponse", 'bundle: "/run/beacon/b/c1"')) +
          record(CREATE, task("CreateTaskResponse", "pid: 42")) +
          record(START, task("StartResponse", "pid: 43")) +
          record(START, task("StartResponse", "pid: 44")) +
          record(OUT_INIT_1, guest("ReadOutputResponse", 'data: "hello\\n"')) +
          record(OUT_INIT_1, guest("ReadOutputResponse", 'data: "world\\n" eof: true')) +
          record(OUT_EXEC_2, guest("ReadOutputResponse", 'data: "err" eof: true')) +
          record(WAIT_C1, task("WaitResponse", "exit_status: 137 exited_at { seconds: 1 }")) +
          record(WAIT_E1, task("WaitResponse", "exit_status: 1")) +
          record(PIDS, task("PidsResponse", "processes { pid: 1 } processes { pid: 4294967295 }")) +
          record(DELETE, task("DeleteResponse", "pid: 42 exit_status: 3")))
    write("guest_response", "errors", bytes([everything]) +
          b"".join(record(k, b"guest says no", code) for k, code in
                   [(NETWORK, 14), (BUNDLE, 3), (CREATE, 2), (START, 9), (EXEC, 12), (PIDS, 13),
                    (KILL, 5), (RESIZE, 12), (PAUSE, 10), (RESUME, 4), (DELETE, 2),
                    (WAIT_C1, 14), (OUT_INIT_1, 15), (WRITE_INPUT, 1)]))
    write("guest_response", "garbage", bytes([everything]) +
          b"".join(record(k, b"\xff\x01\x02") for k in range(20)))
    write("guest_response", "hello-fails", bytes([0]) + record(HELLO, b"", 14))
    write("guest_response", "start-fails-exec", bytes([0x2]) + record(START) +
          record(START, b"no", 9) + record(WAIT_C1, b"", 14))


def spec_adapter_seeds():
    spec = subprocess.run(["ctr", "oci", "spec"], check=True, capture_output=True).stdout
    write("spec_adapter", "ctr-oci-spec", b"\x00" + spec)
    write("spec_adapter", "ctr-oci-spec-dns", b"\x03rootfs/sub\n" + spec)
    write("spec_adapter", "containerd-1.7", b"\x01" + b'{"ociVersion":"1.1.0-rc.1",'
          b'"root":{"path":"/var/lib/rootfs","readonly":true},'
          b'"hooks":{"prestart":[{"path":"/usr/bin/hook"}]},'
          b'"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/1/ns/net"}]},'
          b'"annotations":{"io.beaconbox.x":"1","n":2},'
          b'"mounts":[{"destination":"/etc/resolv.conf","type":"tmpfs","source":"tmpfs"}]}')
    write("spec_adapter", "bind-mount", b"\x00" + b'{"mounts":[{"destination":"/data",'
          b'"type":"none","source":"/srv","options":["rbind","ro"]}]}')
    write("spec_adapter", "volumes", b"\x01" + b'{"root":{"path":"rootfs","readonly":true},'
          b'"mounts":[{"destination":"/proc","type":"proc","source":"proc"},'
          b'{"destination":"/etc/hostname","type":"bind","source":"/var/lib/h",'
          b'"options":["rbind","rprivate","rw"]},'
          b'{"destination":"/scratch","type":"tmpfs","source":"tmpfs","options":["size=1m"]},'
          b'{"destination":"/v","type":"bind","source":"rel","options":["bind","ro","rw","rro"]}]}')
    write("spec_adapter", "volume-rshared", b"\x00" + b'{"mounts":[{"destination":"/d",'
          b'"type":"bind","source":"/srv","options":["rbind","rshared"]}]}')
    write("spec_adapter", "process", b"\x00" + b'{"args":["/bin/sh","-c","echo"],"cwd":"/",'
          b'"env":["PATH=/bin"],"terminal":false}')
    write("spec_adapter", "bad-rootfs", b"\x02../escape\n{}")


def config_seeds():
    with open(os.path.join(ROOT, "config", "config.toml"), "rb") as f:
        write("config", "default", f.read())
    write("config", "plugins", b'[vm]\nvmm = "qemu"\nvcpus = 2\nmemory_mib = 256\n'
          b'kernel_path = "k"\ninitrd_path = "i"\n[network]\nmode = "bridge"\n'
          b'[plugins.vmm.qemu]\npath = "plugins/vmm-qemu.so"\n'
          b'[plugins.vmm.qemu.config]\nbinary = "/usr/bin/qemu"\nextra = ["-a", "-b"]\n'
          b'n = 3\nf = 1.5\nt = { a = 1 }\n[plugins.network.bridge]\npath = "/opt/b.so"\n')
    write("config", "wrong-types", b'[vm]\nvcpus = "two"\nmemory_mib = -1\nunknown = 1\n')


def metrics(text):
    return encode("io.containerd.cgroups.v2.Metrics", text,
                  "github.com/containerd/cgroups/v2/stats/metrics.proto", [CTRD_SRC])


def guest_metrics_seeds():
    # Byte 0: even = the cgroup v2 type URL, bit 1 = add the VM cost (guest_metrics_fuzz.cc).
    sample = metrics('pids { current: 3 limit: 18446744073709551615 } cpu { usage_usec: 123456 } '
                     'memory { usage: 6291456 inactive_file: 786432 anon: 4321792 } '
                     'memory_events { oom_kill: 1 } io { usage { major: 254 rbytes: 4096 } }')
    write("guest_metrics", "sample", bytes([0]) + sample)
    write("guest_metrics", "sample-vm-cost", bytes([2]) + sample)
    write("guest_metrics", "v1-type", bytes([1]) + b"io.containerd.cgroups.v1.Metrics\0" + sample)
    write("guest_metrics", "too-many-pids", bytes([0]) + metrics("pids { current: 99999999 }"))
    write("guest_metrics", "rdma-unknown", bytes([0]) + sample +
          metrics('rdma { current { device: "x" } }') + b"\xea\x04\x03abc")


def checkpoint_manifest_seeds():
    # beaconbox-checkpoint.json as the shim writes it (host/shim/checkpoint_manifest.cc).
    digest = "ab" * 32
    good = {"format": "beaconbox-checkpoint 1", "beaconbox_version": "0.1.0",
            "kernel_sha256": digest, "initrd_sha256": digest, "vmm": "qemu",
            "vmm_version": "QEMU emulator version 7.2.22", "memory_mib": 512,
            "files": [{"name": "vm.state", "size": 94371840, "sha256": digest}]}
    write("checkpoint_manifest", "good", json.dumps(good, indent=2).encode())
    write("checkpoint_manifest", "truncated", json.dumps(good).encode()[:100])
    bad_name = dict(good, files=[{"name": "../etc/passwd", "size": 1, "sha256": digest}])
    write("checkpoint_manifest", "bad-name", json.dumps(bad_name).encode())
    write("checkpoint_manifest", "foreign", b'{"checkpoint":"criu","version":3}')


if __name__ == "__main__":
    ttrpc_server_seeds()
    ttrpc_client_seeds()
    guest_response_seeds()
    spec_adapter_seeds()
    config_seeds()
    guest_metrics_seeds()
    checkpoint_manifest_seeds()
