#!/usr/bin/env python3
"""Turn the pod that `webhook inject` made into local processes, for `make demo`.

Reads the injected YAML (a Deployment or Pod; other documents are ignored), takes the sidecar container
(`--sidecar`, looked up in initContainers then containers) and one application container (`--app`), and writes a
bash file defining, for each, `<PREFIX>_BIN`, `<PREFIX>_ARGS=(...)`, `<PREFIX>_ENV=(NAME=value ...)` and
`<PREFIX>_READY_URL` (prefixes SIDECAR and APP), plus `WEB_IDENTITY_TOKEN_PATH` (the sidecar's mapped
AWS_WEB_IDENTITY_TOKEN_FILE, empty if none).

Translation, printed line by line so the demo shows it:
- every pod volume becomes a directory `<root>/volumes/<volume name>` (a configMap volume can be pointed at an
  existing directory with `--config-map NAME=DIR`); containers that mount the same volume share the directory,
  as they share the volume in the pod. In-pod paths under a container's mountPath in its args and env values are
  rewritten to the directory (readOnly is not enforced locally).
- `0.0.0.0:PORT` / `127.0.0.1:PORT` in args and env values become `127.0.0.1:<mapped PORT>` (`--port A=B`,
  default unchanged): the demo binds loopback only.
- an image becomes a local binary (`--image IMAGE=PATH`); an unmapped image, a `command`, `valueFrom` env or an
  `envFrom` is an error (the demo would otherwise silently drop it).
- readiness: the sidecar's startupProbe (else readinessProbe) and the app's readinessProbe, httpGet only, as
  `http://127.0.0.1:<mapped port><path>`.
"""

import argparse
import os
import re
import shlex
import sys

import yaml


def fail(message):
    sys.exit(f"pod_to_local: {message}")


def pair(text):
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def pod_spec(documents):
    for doc in documents:
        if not isinstance(doc, dict):
            continue
        if doc.get("kind") == "Pod":
            return doc.get("spec") or {}
        if doc.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
    fail("no Pod or workload with a pod template in the input")


def find_container(spec, name, where):
    for field in where:
        for container in spec.get(field) or []:
            if container.get("name") == name:
                return field, container
    fail(f"no container named {name!r} in {' or '.join(where)} (did webhook inject add it?)")


class Translator:
    def __init__(self, spec, root, config_maps, ports):
        self.ports = ports
        self.volume_dirs = {}
        for volume in spec.get("volumes") or []:
            name = volume["name"]
            config_map = (volume.get("configMap") or {}).get("name")
            if config_map is not None and config_map in config_maps:
                path = config_maps[config_map]
                kind = f"configMap {config_map}"
            else:
                path = os.path.join(root, "volumes", name)
                kind = next((k for k in volume if k != "name"), "volume")
                if kind == "emptyDir" and (volume.get("emptyDir") or {}).get("medium"):
                    kind = f"emptyDir medium {volume['emptyDir']['medium']}"
                os.makedirs(path, exist_ok=True)
            self.volume_dirs[name] = (path, kind)

    def mounts(self, container):
        mounts = []
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in self.volume_dirs:
                fail(f"container {container['name']!r} mounts unknown volume {mount['name']!r}")
            path, kind = self.volume_dirs[mount["name"]]
            if mount.get("subPath"):
                path = os.path.join(path, mount["subPath"])
            mounts.append((mount["mountPath"].rstrip("/"), path, mount["name"], kind, bool(mount.get("readOnly"))))
        # Longest mountPath first, so nested mounts win.
        return sorted(mounts, key=lambda m: -len(m[0]))

    def value(self, text, mounts):
        for in_pod, local, *_ in mounts:
            text = re.sub(re.escape(in_pod) + r"(?=/|$|\s|,)", lambda _m, local=local: local, text)

        def address(match):
            return f"127.0.0.1:{self.ports.get(match.group(2), match.group(2))}"

        return re.sub(r"\b(0\.0\.0\.0|127\.0\.0\.1):(\d+)\b", address, text)

    def probe_url(self, container, probe_names):
        for probe_name in probe_names:
            probe = container.get(probe_name)
            if not probe:
                continue
            http_get = probe.get("httpGet")
            if not http_get:
                fail(f"container {container['name']!r}: {probe_name} is not httpGet; the demo only waits on HTTP")
            port = http_get["port"]
            if isinstance(port, str) and not port.isdigit():
                named = [p for p in container.get("ports") or [] if p.get("name") == port]
                if not named:
                    fail(f"container {container['name']!r}: {probe_name} names unknown port {port!r}")
                port = named[0]["containerPort"]
            port = self.ports.get(str(port), str(port))
            return f"http://127.0.0.1:{port}{http_get.get('path', '/')}"
        return ""

    def container(self, prefix, container, images, probes):
        name = container["name"]
        for unsupported in ("command", "envFrom"):
            if container.get(unsupported):
                fail(f"container {name!r}: {unsupported} is not supported by the local demo")
        image = container.get("image", "")
        if image not in images:
            fail(f"container {name!r}: image {image!r} has no local binary (pass --image {image}=PATH)")
        mounts = self.mounts(container)
        print(f"  {name}: image {image} -> {images[image]}")
        for in_pod, local, volume, kind, read_only in mounts:
            ro = ", readOnly in the pod" if read_only else ""
            print(f"  {name}: {in_pod} (volume {volume}, {kind}{ro}) -> {local}")
        args = []
        for arg in container.get("args") or []:
            local = self.value(str(arg), mounts)
            if local != arg:
                print(f"  {name}: arg {arg} -> {local}")
            args.append(local)
        env = []
        for var in container.get("env") or []:
            if "valueFrom" in var:
                fail(f"container {name!r}: env {var['name']} uses valueFrom, not supported by the local demo")
            raw = str(var.get("value", ""))
            local = self.value(raw, mounts)
            note = f"  (in the pod: {raw})" if local != raw else ""
            print(f"  {name}: env {var['name']}={local}{note}")
            env.append(f"{var['name']}={local}")
        ready = self.probe_url(container, probes)
        if ready:
            print(f"  {name}: ready when {ready} answers 2xx ({' / '.join(probes)})")
        token = next((e.split("=", 1)[1] for e in env if e.startswith("AWS_WEB_IDENTITY_TOKEN_FILE=")), "")
        lines = [
            f"{prefix}_NAME={shlex.quote(name)}",
            f"{prefix}_BIN={shlex.quote(images[image])}",
            f"{prefix}_ARGS=({' '.join(shlex.quote(a) for a in args)})",
            f"{prefix}_ENV=({' '.join(shlex.quote(e) for e in env)})",
            f"{prefix}_READY_URL={shlex.quote(ready)}",
        ]
        return lines, token


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pod", required=True, help="webhook inject output (YAML, multi-document)")
    parser.add_argument("--root", required=True, help="directory for the pod's volumes")
    parser.add_argument("--out", required=True, help="bash file to write")
    parser.add_argument("--sidecar", default="credproxy")
    parser.add_argument("--app", required=True)
    parser.add_argument("--image", type=pair, action="append", default=[], help="IMAGE=local binary")
    parser.add_argument("--config-map", type=pair, action="append", default=[], help="NAME=existing directory")
    parser.add_argument("--port", type=pair, action="append", default=[], help="in-pod port=local port")
    opts = parser.parse_args()

    with open(opts.pod, encoding="utf-8") as f:
        spec = pod_spec(list(yaml.safe_load_all(f)))
    translator = Translator(spec, opts.root, dict(opts.config_map), dict(opts.port))
    images = dict(opts.image)
    field, sidecar = find_container(spec, opts.sidecar, ["initContainers", "containers"])
    native = field == "initContainers" and sidecar.get("restartPolicy") == "Always"
    print(f"  {opts.sidecar}: {'native sidecar (init container, restartPolicy Always): started first' if native else field}")
    sidecar_lines, token = translator.container("SIDECAR", sidecar, images, ["startupProbe", "readinessProbe"])
    _, app = find_container(spec, opts.app, ["containers"])
    app_lines, _ = translator.container("APP", app, images, ["readinessProbe"])
    with open(opts.out, "w", encoding="utf-8") as f:
        f.write("\n".join(sidecar_lines + app_lines + [f"WEB_IDENTITY_TOKEN_PATH={shlex.quote(token)}", ""]))


if __name__ == "__main__":
    main()
