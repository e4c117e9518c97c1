#!/usr/bin/env python3
"""Builds the podcred container images without a registry or a container engine (`make images`).

Contract:
- Input: the release binaries (target/release/{webhook,credproxy,gateway}) and the Debian packages pinned in
  deploy/images/base-packages.lock (fetched with `apt-get download` into $PODCRED_CACHE/debs, SHA-256 checked).
- Output: <out>/<name>.tar for each binary, in the `docker save` layout (manifest.json) that also carries an OCI
  image layout (oci-layout, index.json, blobs/sha256/*): `docker load`, `ctr images import`, `kind load
  image-archive`, `skopeo copy docker-archive:` and `oci-archive:` all read it.
- Image: two uncompressed layers — a distroless-style base (the packages' files minus docs/man/sbin, /etc/passwd
  and /etc/group with nonroot 65532, /tmp, /home/nonroot, the CA bundle at /etc/ssl/certs/ca-certificates.crt,
  dpkg status for scanners; no shell, no package manager) shared by all images, and the binary at /<name>.
  User 65532:65532, entrypoint ["/<name>"], the ports of deploy/docker/<name>.Dockerfile.
- Reproducible: entries sorted, mtime fixed (SOURCE_DATE_EPOCH, default 0), owners numeric, JSON with sorted
  keys and no timestamps: the same inputs give bit-identical archives.
"""
import argparse
import hashlib
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
NONROOT = 65532
# Exposed ports, as in deploy/docker/<name>.Dockerfile (tests/tests/images.rs checks they agree).
PORTS = {"webhook": [8443, 9999], "credproxy": [9911, 9912], "gateway": [8080, 9091]}
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
# Package paths the runtime never needs (documentation, maintainer tools such as update-ca-certificates).
DROPPED_PREFIXES = ("usr/share/man/", "usr/share/lintian/", "usr/share/doc-base/", "usr/share/bug/", "usr/sbin/")


def read_lock(path):
    packages = []
    for line in open(path, encoding="utf-8"):
        line = line.split("#", 1)[0].strip()
        if line:
            name, version, sha256 = line.split()
            packages.append((name, version, sha256))
    return packages


def fetch_deb(cache, name, version, sha256):
    """The pinned .deb from the cache, downloading it with apt-get the first time."""
    os.makedirs(cache, exist_ok=True)
    arch_suffixes = ("_amd64.deb", "_all.deb")
    file_version = version.split(":", 1)[-1]

    def cached():
        for suffix in arch_suffixes:
            path = os.path.join(cache, f"{name}_{file_version}{suffix}")
            if os.path.exists(path):
                return path
        return None

    path = cached()
    if path is None:
        print(f"build-images: downloading Debian package {name}={version} (apt-get download)", file=sys.stderr)
        subprocess.run(["apt-get", "download", "-q", f"{name}={version}"], cwd=cache, check=True)
        path = cached()
        if path is None:
            sys.exit(f"build-images: apt-get download {name}={version} wrote no .deb into {cache}")
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != sha256:
        sys.exit(f"build-images: {path} has SHA-256 {digest}, base-packages.lock pins {sha256}")
    return path


def ar_members(data):
    """The members of a Debian `ar` archive: {name: bytes}."""
    assert data[:8] == b"!<arch>\n", "not an ar archive"
    members, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def decompress(name, blob):
    if name.endswith(".xz"):
        return lzma.decompress(blob)
    if name.endswith(".gz"):
        return zlib.decompress(blob, 16 + zlib.MAX_WBITS)
    if name.endswith(".tar"):
        return blob
    sys.exit(f"build-images: unsupported member compression {name}")


def deb_contents(path):
    """(control text, data tar bytes) of a .deb."""
    members = ar_members(open(path, "rb").read())
    control_name = next(n for n in members if n.startswith("control.tar"))
    data_name = next(n for n in members if n.startswith("data.tar"))
    with tarfile.open(fileobj=io.BytesIO(decompress(control_name, members[control_name]))) as control_tar:
        control = next(
            control_tar.extractfile(m).read().decode()
            for m in control_tar.getmembers()
            if m.name.lstrip("./") == "control"
        )
    return control, decompress(data_name, members[data_name])


class Layer:
    """A set of tar entries keyed by path, written sorted with fixed metadata."""

    def __init__(self, mtime):
        self.mtime = mtime
        self.entries = {}

    def _info(self, path, kind, mode, uid=0, gid=0):
        info = tarfile.TarInfo(path)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = self.mtime
        return info

    def add_parents(self, path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in self.entries:
                self.entries[parent] = (self._info(parent, tarfile.DIRTYPE, 0o755), None)

    def add_dir(self, path, mode=0o755, owner=0):
        self.add_parents(path)
        self.entries[path] = (self._info(path, tarfile.DIRTYPE, mode, owner, owner), None)

    def add_file(self, path, data, mode=0o644):
        self.add_parents(path)
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.entries[path] = (info, data)

    def add_symlink(self, path, target):
        self.add_parents(path)
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.entries[path] = (info, None)

    def tar_bytes(self):
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for path in sorted(self.entries):
                info, data = self.entries[path]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return out.getvalue()


def kept(path, package):
    if path.startswith("usr/share/doc/"):
        return path == f"usr/share/doc/{package}/copyright" or path in ("usr/share/doc", f"usr/share/doc/{package}")
    return not any(path.startswith(p) or path + "/" == p for p in DROPPED_PREFIXES)


def base_layer(debs, mtime):
    layer = Layer(mtime)
    ca_files = {}
    for name, path in debs:
        control, data = deb_contents(path)
        layer.add_file(f"var/lib/dpkg/status.d/{name}", control.encode())
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                rel = member.name.lstrip("./").rstrip("/")
                if not rel or not kept(rel, name):
                    continue
                if member.isdir():
                    layer.add_dir(rel, member.mode & 0o7777)
                elif member.issym():
                    layer.add_symlink(rel, member.linkname)
                elif member.isfile() or member.islnk():
                    content = tar.extractfile(member).read()
                    layer.add_file(rel, content, member.mode & 0o7777)
                    if rel.startswith("usr/share/ca-certificates/") and rel.endswith(".crt"):
                        ca_files[rel] = content
    # What update-ca-certificates would write (it runs in the package's postinst, which we do not run).
    bundle = b"".join(c if c.endswith(b"\n") else c + b"\n" for _, c in sorted(ca_files.items()))
    if not bundle:
        sys.exit("build-images: no CA certificates found in the base packages")
    layer.add_file(CA_BUNDLE, bundle)
    layer.add_file("etc/passwd", (
        "root:x:0:0:root:/root:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n").encode())
    layer.add_file("etc/group", f"root:x:0:\nnobody:x:65534:\nnonroot:x:{NONROOT}:\n".encode())
    layer.add_file("etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    layer.add_dir("tmp", 0o1777)
    layer.add_dir("root", 0o700)
    layer.add_dir("home/nonroot", 0o700, NONROOT)
    return layer.tar_bytes()


def binary_layer(name, path, mtime):
    layer = Layer(mtime)
    layer.add_file(name, open(path, "rb").read(), 0o755)
    return layer.tar_bytes()


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_archive(out_path, ref, layers, config):
    config_bytes = canonical_json(config)
    layer_descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest_of(l), "size": len(l)}
                   for l in layers]
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config_bytes),
                   "size": len(config_bytes)},
        "layers": layer_descs,
    })
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest_of(manifest),
            "size": len(manifest),
            # containerd (ctr import, kind load) names the image from the first; OCI tools from the second.
            "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[1]},
        }],
    })
    blob = lambda data: "blobs/sha256/" + digest_of(data).split(":", 1)[1]
    # docker load (old and new) reads manifest.json; the paths point into the OCI blob store.
    docker_manifest = canonical_json([{"Config": blob(config_bytes), "RepoTags": [ref],
                                       "Layers": [blob(l) for l in layers]}])
    archive = Layer(0)
    archive.add_file("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"}))
    archive.add_file("index.json", index)
    archive.add_file("manifest.json", docker_manifest)
    for data in [config_bytes, manifest, *layers]:
        archive.add_file(blob(data), data)
    tmp = out_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(archive.tar_bytes())
    os.replace(tmp, out_path)
    return digest_of(manifest)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bin-dir", default="target/release", help="folder with the release binaries")
    parser.add_argument("--out", required=True, help="output folder for <name>.tar")
    parser.add_argument("--registry", default="ghcr.io/podcred", help="image name prefix (the chart's default)")
    parser.add_argument("--tag", default="")
    parser.add_argument("--debs", default=os.path.join(os.environ.get("PODCRED_CACHE", ".cache"), "debs"))
    parser.add_argument("--scratch", metavar="REF=BINARY",
                        help="instead: one image holding only BINARY (static) at /<basename>, e.g. the test pause image")
    parser.add_argument("names", nargs="*", default=list(PORTS))
    args = parser.parse_args()
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    if args.scratch:
        ref, binary = args.scratch.split("=", 1)
        name = os.path.basename(binary)
        app = binary_layer(name, binary, mtime)
        # 65535: the user of the upstream pause image.
        config = {"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
                  "config": {"User": "65535:65535", "Entrypoint": [f"/{name}"]},
                  "rootfs": {"type": "layers", "diff_ids": [digest_of(app)]}}
        os.makedirs(args.out, exist_ok=True)
        out_path = os.path.join(args.out, f"{name}.tar")
        print(out_path, ref, write_archive(out_path, ref, [app], config))
        return

    if not args.tag:
        parser.error("--tag is required")
    debs = [(name, fetch_deb(args.debs, name, version, sha))
            for name, version, sha in read_lock(os.path.join(HERE, "base-packages.lock"))]
    base = base_layer(debs, mtime)
    os.makedirs(args.out, exist_ok=True)
    for name in args.names:
        binary = os.path.join(args.bin_dir, name)
        if not os.path.isfile(binary):
            sys.exit(f"build-images: {binary} missing (cargo build --release builds it)")
        app = binary_layer(name, binary, mtime)
        diff_ids = [digest_of(base), digest_of(app)]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {
                "User": f"{NONROOT}:{NONROOT}",
                "Entrypoint": [f"/{name}"],
                "Env": [PATH_ENV, f"SSL_CERT_FILE=/{CA_BUNDLE}"],
                "WorkingDir": "/",
                "ExposedPorts": {f"{p}/tcp": {} for p in PORTS.get(name, [])},
                "Labels": {"org.opencontainers.image.title": f"podcred {name}",
                           "org.opencontainers.image.version": args.tag},
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "podcred base: " +
                         ", ".join(os.path.basename(p) for _, p in debs)},
                        {"created": "1970-01-01T00:00:00Z", "created_by": f"podcred: /{name}"}],
        }
        ref = f"{args.registry}/{name}:{args.tag}"
        out_path = os.path.join(args.out, f"{name}.tar")
        manifest_digest = write_archive(out_path, ref, [base, app], config)
        unpacked = len(base) + len(app)
        print(f"{out_path}: {ref} {manifest_digest} (layers {unpacked / 2**20:.1f} MiB unpacked,"
              f" base {len(base) / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
