"""podcred's test-only launcher for moto 5.2.5 with AWS-like authentication.

Run it like `moto_server`:

    INITIAL_NO_AUTH_ACTION_COUNT=0 $PODCRED_CACHE/venv/bin/python tests/peers/moto_wrapper.py -H 127.0.0.1 -p PORT

Set-up sequence for tests: POST /moto-api/reset-auth (Content-Type: text/plain, body `inf`) → create
IAM roles/policies/functions → reset-auth body `0` → every later request is authenticated.

It patches five moto 5.2.5 problems (listed below), which is why moto is pinned:
 1. AssumeRoleWithWebIdentity / AssumeRoleWithSAML skip signature checks (SDKs send them unsigned;
    plain moto answers HTTP 500 KeyError 'HTTP_AUTHORIZATION').
 2. Lambda Invoke is authorised as IAM action lambda:InvokeFunction (moto checks lambda:Invoke).
 3. Body-less requests (other than form POSTs) are signature-checked against an empty body (moto
    hashes a dict of headers).
 4. Lambda auth errors are restJson1 errors with Lambda's codes (AccessDeniedException,
    InvalidSignatureException, UnrecognizedClientException) instead of IAM XML.
 5. Temporary credentials of a role missing from IAM → AccessDenied instead of HTTP 500.

Optional, off unless PODCRED_MOTO_VERIFY_WEB_IDENTITY=1, and only while auth is on: the web-identity
checks AWS STS does and moto skips — the token must be a JWT (else InvalidIdentityToken), its `exp`
must be in the future (else ExpiredTokenException), and the role must exist in moto's IAM (else
AccessDenied). It checks shape and claims only, not signatures.
"""

import base64
import json
import os
import sys
import time

import moto

if moto.__version__ != "5.2.5":
    sys.exit(f"moto_wrapper.py patches moto 5.2.5 internals; found moto {moto.__version__}")

from moto import settings  # noqa: E402
from moto.core import authorization  # noqa: E402
from moto.core.exceptions import JsonRESTError  # noqa: E402
from moto.core.exceptions import _RESTError as RESTError  # noqa: E402
from moto.iam import access_control  # noqa: E402
from moto.iam.exceptions import NotFoundException  # noqa: E402

UNSIGNED_ACTIONS = {"AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"}
LAMBDA_AUTH_CODES = {
    "AccessDenied": "AccessDeniedException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
    "InvalidClientTokenId": "UnrecognizedClientException",
}
VERIFY_WEB_IDENTITY = os.environ.get("PODCRED_MOTO_VERIFY_WEB_IDENTITY") == "1"


class StsRejection(RESTError):
    """An STS query-protocol error raised before the action runs (ServiceException is not caught there)."""

    def __init__(self, error_type, message, status=400):
        super().__init__(error_type, message)
        self.code = status
        # awsQuery error shape (<ErrorResponse><Error>…), which strict clients such as aws-sdk-rust
        # parse; moto's generic RESTError nests it in <Errors> (the EC2 shape).
        from xml.sax.saxutils import escape

        self.description = (
            '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
            f"<Code>{escape(error_type)}</Code><Message>{escape(message)}</Message></Error>"
            "<RequestId>podcred-moto-wrapper</RequestId></ErrorResponse>"
        )


def _auth_on():
    return authorization.ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT


def _b64url_json(segment):
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded.encode()))


def _verify_web_identity(resp):
    token = resp._get_param("WebIdentityToken") or ""
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError("not three segments")
        _b64url_json(parts[0])
        claims = _b64url_json(parts[1])
        if not isinstance(claims, dict):
            raise ValueError("claims are not an object")
    except (ValueError, UnicodeDecodeError):
        raise StsRejection("InvalidIdentityToken", "Couldn't parse the web identity token") from None
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= int(time.time()):
        raise StsRejection("ExpiredTokenException", "Token expired: current date/time is past the token's exp")
    role_arn = resp._get_param("RoleArn") or ""
    from moto.iam.models import iam_backends
    from moto.utilities.utils import get_partition

    account = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    try:
        iam_backends[account][get_partition(resp.region)].get_role_by_arn(role_arn)
    except (NotFoundException, KeyError, ValueError):
        raise StsRejection(
            "AccessDenied",
            f"Not authorized to perform sts:AssumeRoleWithWebIdentity on {role_arn}",
            status=403,
        ) from None


_original_authenticate = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action


def _authenticate(self, iam_request_cls, resource="*"):
    if self._get_action() in UNSIGNED_ACTIONS:  # patch 1
        if VERIFY_WEB_IDENTITY and _auth_on():
            _verify_web_identity(self)
        return None
    try:
        return _original_authenticate(self, iam_request_cls, resource)
    except RESTError as err:  # patch 4
        if getattr(self, "service_name", None) != "awslambda":
            raise
        mapped = JsonRESTError(LAMBDA_AUTH_CODES.get(err.error_type, err.error_type), err.message)
        mapped.code = err.code
        raise mapped from None


authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = _authenticate

_original_request_init = access_control.IAMRequestBase.__init__


def _request_init(self, *args, **kwargs):
    _original_request_init(self, *args, **kwargs)
    if self._action == "lambda:Invoke":  # patch 2
        self._action = "lambda:InvokeFunction"


access_control.IAMRequestBase.__init__ = _request_init

_original_create_aws_request = access_control.IAMRequestBase._create_aws_request


def _create_aws_request(self):
    # patch 3. Form POSTs (query protocol: STS, IAM) arrive with an empty raw body because werkzeug
    # parsed the form into `data`, which moto re-encodes correctly; leave those alone.
    content_type = str(self._headers.get("Content-Type", ""))
    if not self._body and not content_type.startswith("application/x-www-form-urlencoded"):
        self._data = b""
    return _original_create_aws_request(self)


access_control.IAMRequestBase._create_aws_request = _create_aws_request

_original_collect_policies = access_control.AssumedRoleAccessKey.collect_policies


def _collect_policies(self):
    try:
        return _original_collect_policies(self)
    except NotFoundException:  # patch 5
        return []


access_control.AssumedRoleAccessKey.collect_policies = _collect_policies

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
