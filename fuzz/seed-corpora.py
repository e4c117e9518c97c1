#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ from the repository's fixtures.

Run once after adding fixtures: python3 fuzz/seed-corpora.py (idempotent; file names are content hashes).
"""
import hashlib
import json
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def yaml_docs_to_json(path):
    # The fixtures' pods are simple YAML; the webhook's own tests parse them. Here they are only seeds, so
    # a JSON rendering through the yaml module when present, else the raw text (still a useful seed).
    try:
        import yaml  # type: ignore
        return json.dumps(yaml.safe_load(path.read_text()))
    except Exception:
        return None


fx = ROOT / "webhook" / "tests" / "fixtures"
# webhook_admission: selector byte 0 = application/json, then the fixture request.
for req in sorted((fx / "admission").glob("*/request.json")):
    body = req.read_bytes()
    write("webhook_admission", b"\x00" + body)
    write("webhook_admission", b"\x01" + body)
for case in sorted((fx / "mutate").glob("*/pod.yaml")):
    pod = yaml_docs_to_json(case)
    if pod is None:
        continue
    for sa in ["default", "cc-a", "sidecar-a", "missing-a", "norole-a"]:
        p = json.loads(pod)
        p.setdefault("spec", {})["serviceAccountName"] = sa
        review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                  "request": {"uid": "fuzz", "namespace": "default", "operation": "CREATE", "object": p}}
        write("webhook_admission", b"\x00" + json.dumps(review).encode())
    for selector in range(4):
        write("webhook_mutate", bytes([selector]) + pod.encode())
# webhook_inject: every inject fixture's input and expected output.
for f in sorted((fx / "inject").glob("*/*.yaml")):
    if f.name in ("input.yaml", "expected.yaml"):
        write("webhook_inject", f.read_bytes())
# go_parsers: values the flags and annotations see.
for s in ["0", "1m0s", "1.5h", "-1s", "10µs", "10μs", ".5s", "2h45m0.5s", "300ns",
          "0x1F", "017", "0b101", "-9223372036854775808", "+3600", "86400",
          "true", "F", "c0,c1", "\"c0,c1\"", "\"say \"\"hi\"\"\",x", "a\r\nb",
          "/var/run/secrets/eks.amazonaws.com/serviceaccount/../token", "a/./b//c/..", ""]:
    write("go_parsers", s)
# credproxy_config: the README's example and small variants.
readme = (ROOT / "credproxy" / "README.md").read_text()
start = readme.index("```yaml\n# credproxy --config roles.yaml")
example = readme[start + len("```yaml\n"): readme.index("```", start + 8)]
write("credproxy_config", example)
write("credproxy_config", "roles:\n  dev:\n    role_arn: arn:aws:iam::123456789012:role/dev\n    web_identity_token_file: /t\n")
write("credproxy_config", "roles: {}\n")
write("credproxy_config", "default_role: x\nroles:\n  a:\n    role_arn: arn:aws:iam::123456789012:role/a\n    web_identity_token_file: /t\n    duration_seconds: 900\n")
# credproxy_sts: STS answers (first byte 0 = HTTP 200, 2 = 400, 3 = 403, 4 = 500).
ok = """<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:ns:app</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/app/fuzz</Arn>
      <AssumedRoleId>AROAFUZZ:fuzz</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>FwoGZXIvYXdzEFUZZ</SessionToken>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYFUZZKEY</SecretAccessKey>
      <Expiration>2030-01-01T00:00:00Z</Expiration>
      <AccessKeyId>ASIAFUZZFUZZFUZZFUZZ</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/example</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>fuzz</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"""
err = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>fuzz</RequestId>
</ErrorResponse>"""
write("credproxy_sts", b"\x00" + ok.encode())
write("credproxy_sts", b"\x00" + ok.replace("2030-01-01T00:00:00Z", "2030-01-01T00:00:00.123Z").encode())
write("credproxy_sts", b"\x00" + ok.replace("<Credentials>", "<X>").replace("</Credentials>", "</X>").encode())
write("credproxy_sts", b"\x02" + err.format(code="ExpiredTokenException", message="Token expired").encode())
write("credproxy_sts", b"\x03" + err.format(code="AccessDenied", message="Not authorized").encode())
write("credproxy_sts", b"\x04" + err.format(code="InternalFailure", message="oops").encode())
write("credproxy_sts", b"\x02" + err.format(code="InvalidIdentityToken", message="bad token eyJhbGciOiJSUzI1NiJ9.fuzz-web-identity-token.sig").encode())
