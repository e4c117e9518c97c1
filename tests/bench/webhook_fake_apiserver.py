#!/usr/bin/env python3
"""A minimal Kubernetes API stand-in for webhook benchmarks (loopback only).

Serves N synthetic ServiceAccounts (plus `default/bench` annotated with a role) on
GET /api/v1/serviceaccounts, as PartialObjectMetadataList when the client asks for metadata only
(podcred) and as ServiceAccountList otherwise (the upstream Go webhook), honouring limit/continue
paging; watch requests are held open until their timeoutSeconds, after streaming every object and the
initial-events-end bookmark when asked to (sendInitialEvents=true: client-go's watch-list); GET of one
ServiceAccount works; ConfigMap lists are empty. Not a conformance fake: just enough for a
reflector/informer to list, sync and idle.

usage: webhook_fake_apiserver.py PORT SERVICE_ACCOUNTS
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT = int(sys.argv[1])
COUNT = int(sys.argv[2])
ROLE = "arn:aws:iam::111122223333:role/bench"


def service_account(namespace, name, annotated):
    meta = {"name": name, "namespace": namespace, "resourceVersion": "1",
            "uid": f"00000000-0000-0000-0000-{abs(hash((namespace, name))) % 10**12:012d}"}
    if annotated:
        meta["annotations"] = {"eks.amazonaws.com/role-arn": ROLE}
    return meta


METAS = [service_account("default", "bench", True)]
for i in range(COUNT):
    # Realistic mix: every 10th SA has a role annotation.
    METAS.append(service_account(f"ns-{i % 500}", f"sa-{i}", i % 10 == 0))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, status, body):
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def hold_watch(self, query, metadata_only):
        """Idle watch; with sendInitialEvents=true (client-go's watch-list), first stream every object as
        ADDED and the initial-events-end BOOKMARK."""
        timeout = int(query.get("timeoutSeconds", ["300"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if query.get("sendInitialEvents", ["false"])[0] == "true" and self.path.startswith("/api/v1/serviceaccounts"):
            batch = []
            for m in METAS:
                obj = ({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": m}
                       if metadata_only else {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": m})
                batch.append(json.dumps({"type": "ADDED", "object": obj}, separators=(",", ":")).encode() + b"\n")
                if len(batch) >= 500:
                    self.write_chunk(b"".join(batch))
                    batch = []
            if batch:
                self.write_chunk(b"".join(batch))
            bookmark = {"type": "BOOKMARK", "object": {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {
                "resourceVersion": "100", "annotations": {"k8s.io/initial-events-end": "true"}}}}
            self.write_chunk(json.dumps(bookmark).encode() + b"\n")
        self.wfile.flush()
        time.sleep(timeout)
        self.write_chunk(b"")
        self.close_connection = True

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        metadata_only = "as=PartialObjectMetadata" in self.headers.get("Accept", "")
        if query.get("watch", ["false"])[0] in ("true", "1"):
            return self.hold_watch(query, metadata_only)
        parts = url.path.strip("/").split("/")
        if url.path == "/api/v1/serviceaccounts":
            limit = int(query.get("limit", ["0"])[0] or 0)
            start = int(query.get("continue", ["0"])[0] or 0)
            if query.get("resourceVersion", [""])[0] == "0" or limit == 0:
                page, cont = METAS, ""
            else:
                page = METAS[start:start + limit]
                cont = str(start + limit) if start + limit < len(METAS) else ""
            list_meta = {"resourceVersion": "100"}
            if cont:
                list_meta["continue"] = cont
            if metadata_only:
                items = [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": m} for m in page]
                body = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "items": items}
            else:
                items = [{"metadata": m} for m in page]
                body = {"kind": "ServiceAccountList", "apiVersion": "v1", "metadata": list_meta, "items": items}
            return self.send_json(200, body)
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "serviceaccounts":
            for m in METAS:
                if m["namespace"] == parts[3] and m["name"] == parts[5]:
                    return self.send_json(200, {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": m})
            return self.send_json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "reason": "NotFound", "code": 404,
                                        "message": f'serviceaccounts "{parts[5]}" not found'})
        if url.path.endswith("/configmaps"):
            return self.send_json(200, {"kind": "ConfigMapList", "apiVersion": "v1",
                                        "metadata": {"resourceVersion": "100"}, "items": []})
        return self.send_json(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "reason": "NotFound", "code": 404, "message": "not found"})


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print(f"fake apiserver on 127.0.0.1:{PORT} with {len(METAS)} service accounts", flush=True)
server.serve_forever()
