#!/usr/bin/env python3
"""Stand-ins for the images critest v1.26.1 pulls, built offline and pushed to a
local registry (tests/critest/run.sh starts Debian's docker-registry in the test's
network namespace and runs this there).

Each stand-in is made from Debian's busybox-static and two small static programs
(pause.c, euid.c, compiled by run.sh) and behaves as cri-tools' validation specs
(pkg/validate/*.go at v1.26.1) need the original to behave:

  registry.k8s.io/pause:3.6                   /pause: holds the pod, exits on TERM
  registry.k8s.io/e2e-test-images/busybox:1.29-2
                                              busybox applets as hard links in /bin
                                              (MaskedPaths masks /bin/ls alone), ipcs -m
                                              and pgrep (Debian's busybox has neither) as
                                              scripts, the users of busybox's /etc/passwd
  .../nginx:1.14-2, gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64
                                              an HTTP server on port 80 (12003); pid 1
                                              named nginx, its command line holding
                                              "nginx: master process", its pid in
                                              /var/run/nginx.pid
  .../httpd:2.4.39-4                          logs "Command line: 'httpd -D FOREGROUND'",
                                              serves port 80
  .../nonewprivs:1.3                          a set-user-ID root program printing
                                              "Effective uid: N"
  gcr.io/k8s-staging-cri-tools/test-image-*   busybox plus a file named after the image
                                              (so different names are different images,
                                              the tags of test-image-tags one image),
                                              the user-* ones with the USER of
                                              cri-tools' images/build, predefined-group
                                              with user 1000 in group 50000

  images.py REGISTRY_URL BUSYBOX PAUSE EUID   pushes them all, prints each name
"""

import gzip
import hashlib
import http.client
import io
import json
import subprocess
import sys
import tarfile
import urllib.parse

K8S = "registry.k8s.io/"
E2E = K8S + "e2e-test-images/"
CRI = "gcr.io/k8s-staging-cri-tools/"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
    "bin:x:2:2:bin:/bin:/bin/false\n"
    "sys:x:3:3:sys:/dev:/bin/false\n"
    "sync:x:4:100:sync:/bin:/bin/sync\n"
    "mail:x:8:8:mail:/var/spool/mail:/bin/false\n"
    "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    "operator:x:37:37:Operator:/var:/bin/false\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n"
)
GROUP = (
    "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\n"
    "wheel:x:10:root\nmail:x:8:\nwww-data:x:33:\noperator:x:37:\nstaff:x:50:\n"
    "users:x:100:\nnogroup:x:65533:\nnobody:x:65534:\n"
)


class Layer:
    """A deterministic layer tar (root-owned, mtime 0, in the order added)."""

    def __init__(self):
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.GNU_FORMAT)

    def _info(self, name, kind, mode):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def dir(self, name, mode=0o755):
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))

    def file(self, name, data, mode=0o644):
        if isinstance(data, str):
            data = data.encode()
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def hardlink(self, name, target):
        info = self._info(name, tarfile.LNKTYPE, 0o755)
        info.linkname = target
        self.tar.addfile(info)

    def blob(self):
        """(gzipped bytes, diff id) of the finished layer."""
        self.tar.close()
        raw = self.buffer.getvalue()
        return gzip.compress(raw, mtime=0), "sha256:" + hashlib.sha256(raw).hexdigest()


# Debian's busybox has no ipcs; the specs read shared memory ids with `ipcs -m`. The
# kernel's table of the caller's IPC namespace, in ipcs' columns.
IPCS = """#!/bin/sh
case "$1" in -m|"") ;; *) echo "ipcs (stand-in): only -m" >&2; exit 1 ;; esac
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
awk 'NR > 1 { printf "0x%08x %-10s %-10s %-10s %-10s %-10s\\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
echo
"""

# Nor pgrep: the pids whose name matches the pattern (pgrep's default), itself left out.
PGREP = """#!/bin/sh
[ $# = 1 ] || { echo "pgrep (stand-in): only pgrep PATTERN" >&2; exit 2; }
found=1
for dir in /proc/[0-9]*; do
  pid=${dir#/proc/}
  [ "$pid" = $$ ] && continue
  { read -r name < "$dir/comm"; } 2>/dev/null || continue
  if printf '%s\\n' "$name" | grep -q -- "$1"; then echo "$pid"; found=0; fi
done
exit $found
"""


def busybox_layer(busybox):
    layer = Layer()
    for d in ("bin", "dev", "etc", "home", "proc", "root", "run", "sys", "tmp", "usr",
              "usr/local", "usr/local/bin", "var", "var/run", "var/www"):
        layer.dir(d, 0o1777 if d == "tmp" else 0o700 if d == "root" else 0o755)
    with open(busybox, "rb") as f:
        layer.file("bin/busybox", f.read(), 0o755)
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in sorted(set(applets) - {"busybox"}):
        if "/" not in applet:
            layer.hardlink("bin/" + applet, "bin/busybox")
    layer.file("bin/ipcs", IPCS, 0o755)
    layer.file("bin/pgrep", PGREP, 0o755)
    layer.file("etc/passwd", PASSWD)
    layer.file("etc/group", GROUP)
    return layer.blob()


def web_layer(port, page, script_path, script):
    layer = Layer()
    for d in ("usr/sbin", "usr/share", "usr/share/www"):
        layer.dir(d)
    layer.file("usr/share/www/index.html", page)
    layer.file(script_path, script.replace("PORT", str(port)), 0o755)
    return layer.blob()


# Run as /usr/sbin/nginx TITLE: pid 1 is this script, so its name (comm) is nginx
# (pidof nginx) and its command line holds the title nginx gives its master process.
NGINX = """#!/bin/sh
echo $$ > /var/run/nginx.pid
httpd -f -p PORT -h /usr/share/www &
trap 'kill $!; exit 0' TERM INT
wait
"""
HTTPD = """#!/bin/sh
echo "[mpm_event:notice] AH00489: stand-in configured -- resuming normal operations" >&2
echo "[core:notice] AH00094: Command line: 'httpd -D FOREGROUND'" >&2
httpd -f -p PORT -h /usr/share/www &
trap 'kill $!; exit 0' TERM INT
wait
"""


def single_file_layer(name, data, mode=0o644, dirs=()):
    layer = Layer()
    for d in dirs:
        layer.dir(d)
    layer.file(name, data, mode)
    return layer.blob()


class Registry:
    """The registry HTTP API v2 (push side), over plain HTTP."""

    def __init__(self, url):
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.netloc
        self.pushed = set()

    def request(self, method, path, body=None, headers=None, expect=(200, 201, 202)):
        conn = http.client.HTTPConnection(self.host, timeout=60)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        if resp.status not in expect:
            raise RuntimeError(f"registry {method} {path}: HTTP {resp.status} {data[:200]!r}")
        return resp, data

    def blob(self, repo, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if (repo, digest) not in self.pushed:
            resp, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/")
            location = urllib.parse.urlsplit(resp.getheader("Location"))
            query = location.query + ("&" if location.query else "") + "digest=" + digest
            self.request("PUT", f"{location.path}?{query}", body=data,
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Length": str(len(data))})
            self.pushed.add((repo, digest))
        return {"digest": digest, "size": len(data)}

    def image(self, name, layers, config):
        """Pushes NAME (host/repo:tag) with LAYERS [(gz, diff_id)] and CONFIG (the
        image config's "config" object)."""
        repo_tag = name.split("/", 1)[1]
        repo, tag = repo_tag.rsplit(":", 1)
        image_config = {
            "architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
            "history": [{"created_by": "beaconbox tests/critest/images.py (stand-in)"}],
        }
        config_blob = json.dumps(image_config, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(self.blob(repo, config_blob),
                           mediaType="application/vnd.oci.image.config.v1+json"),
            "layers": [dict(self.blob(repo, gz),
                            mediaType="application/vnd.oci.image.layer.v1.tar+gzip")
                       for gz, _ in layers],
        }
        self.request("PUT", f"/v2/{repo}/manifests/{tag}",
                     body=json.dumps(manifest, sort_keys=True).encode(),
                     headers={"Content-Type": manifest["mediaType"]})
        print(name)


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: images.py REGISTRY_URL BUSYBOX PAUSE EUID")
    url, busybox, pause, euid = sys.argv[1:]
    reg = Registry(url)
    path_env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    base = busybox_layer(busybox)

    with open(pause, "rb") as f:
        reg.image(K8S + "pause:3.6", [single_file_layer("pause", f.read(), 0o755)],
                  {"Env": path_env, "Entrypoint": ["/pause"], "WorkingDir": "/"})

    reg.image(E2E + "busybox:1.29-2", [base], {"Env": path_env, "Cmd": ["sh"]})

    title = "nginx: master process nginx -g daemon off;"
    for name, port in ((E2E + "nginx:1.14-2", 80), (CRI + "hostnet-nginx-amd64:latest", 12003)):
        reg.image(name, [base, web_layer(port, "<h1>stand-in nginx</h1>\n", "usr/sbin/nginx", NGINX)],
                  {"Env": path_env, "ExposedPorts": {f"{port}/tcp": {}},
                   "Entrypoint": ["/usr/sbin/nginx"], "Cmd": [title]})

    httpd = [base, web_layer(80, "<html><body><h1>It works!</h1></body></html>\n",
                             "usr/local/bin/httpd-foreground", HTTPD)]
    reg.image(E2E + "httpd:2.4.39-4", httpd,
              {"Env": path_env, "Cmd": ["httpd-foreground"], "ExposedPorts": {"80/tcp": {}}})

    with open(euid, "rb") as f:
        nnp = single_file_layer("usr/local/bin/nnp", f.read(), 0o4755)
    reg.image(E2E + "nonewprivs:1.3", [base, nnp],
              {"Env": path_env, "Entrypoint": ["/usr/local/bin/nnp"]})

    for image, user in (("test-image-user-uid", "1002"),
                        ("test-image-user-username", "www-data"),
                        ("test-image-user-uid-group", "1003:1004"),
                        ("test-image-user-username-group", "www-data:1004")):
        reg.image(CRI + image + ":latest", [base], {"Env": path_env, "Cmd": ["sh"], "User": user})

    groups = Layer()
    groups.file("etc/passwd", PASSWD + "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")
    groups.file("etc/group", GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")
    groups.dir("home/default-user")
    reg.image(CRI + "test-image-predefined-group:latest", [base, groups.blob()],
              {"Env": path_env, "Cmd": ["sh"], "User": "1000"})

    def test_image(name, tags):
        layer = single_file_layer(name, name + "\n")
        for tag in tags:
            reg.image(CRI + name + ":" + tag, [base, layer], {"Env": path_env, "Cmd": ["sh"]})

    for name in ("test-image-1", "test-image-2", "test-image-3", "test-image-latest"):
        test_image(name, ["latest"])
    test_image("test-image-tags", ["1", "2", "3"])
    test_image("test-image-tag", ["test", "all"])


if __name__ == "__main__":
    main()
