"""DingTalk signatures: verifying inbound robot callbacks and signing custom group robot webhook URLs."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import quote_plus

__all__ = [
    "MAX_BODY_BYTES",
    "WINDOW_MS",
    "CallbackRejected",
    "check_body_size",
    "compute_sign",
    "robot_sign_params",
    "robot_sign_query",
    "verify_callback",
    "verify_callback_headers",
    "verify_shared_token",
]

WINDOW_MS = 3_600_000  # "more than 1 hour apart" is rejected; exactly 1 h passes
MAX_BODY_BYTES = 64 * 1024  # a robot message or card click is a few KiB; anything far larger is not DingTalk


class CallbackRejected(Exception):
    """An inbound request that must not be processed (answer 4xx and log `reason`; never a 500).

    reason: a short machine-friendly phrase ("missing headers", "stale timestamp", "sign mismatch",
    "body too large", "malformed json", "malformed message" …); it never contains a secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def compute_sign(timestamp: str | int, secret: str) -> str:
    """base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")), standard alphabet with padding, not URL-encoded.

    The same formula serves inbound callbacks (key = the app's AppSecret) and custom robot webhooks (key = `SEC…`)."""
    msg = f"{timestamp}\n{secret}".encode()
    digest = hmac.new(secret.encode(), msg, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _now_ms() -> int:
    return int(time.time() * 1000)


def verify_callback(timestamp: str | None, sign: str | None, app_secret: str, *, now_ms: int | None = None,
                    window_ms: int = WINDOW_MS) -> None:
    """Check the `timestamp`/`sign` header pair of a robot callback; CallbackRejected when it does not hold.

    The timestamp must be decimal ms within ±window_ms of now; the sign must equal compute_sign(timestamp,
    app_secret) exactly (a URL-encoded or re-padded sign is rejected). Constant-time comparison."""
    if not timestamp or not sign:
        raise CallbackRejected("missing headers")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 16:
        raise CallbackRejected("malformed timestamp")
    if not sign.isascii():
        raise CallbackRejected("malformed sign")
    try:
        base64.b64decode(sign, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackRejected("malformed sign") from None
    now = _now_ms() if now_ms is None else now_ms
    if abs(now - int(timestamp)) > window_ms:
        raise CallbackRejected("stale timestamp")
    expected = compute_sign(timestamp, app_secret)
    if not hmac.compare_digest(expected.encode("ascii"), sign.encode("ascii")):
        raise CallbackRejected("sign mismatch")


def verify_callback_headers(headers: Mapping[str, str], app_secret: str, *, now_ms: int | None = None) -> None:
    """verify_callback on a header mapping (case-insensitive lookup of `timestamp` and `sign`)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    verify_callback(lowered.get("timestamp"), lowered.get("sign"), app_secret, now_ms=now_ms)


def check_body_size(body: bytes, limit: int = MAX_BODY_BYTES) -> None:
    """CallbackRejected("body too large") when the body exceeds limit bytes.

    The server should also cap what it reads (`client_max_size` or reading at most limit + 1 bytes)."""
    if len(body) > limit:
        raise CallbackRejected("body too large")


def verify_shared_token(provided: str | None, expected: str) -> None:
    """Constant-time check of a shared secret we put into a URL we registered ourselves (e.g. the card
    callbackUrl `…/dingtalk/card-callback?token=…`); CallbackRejected("bad token") when it differs.

    DingTalk's own authentication of HTTP card callbacks is undocumented in our sources, so this is our guard."""
    if not expected:
        raise CallbackRejected("no token configured")
    if not provided or not provided.isascii() or not hmac.compare_digest(provided.encode(), expected.encode()):
        raise CallbackRejected("bad token")


def robot_sign_params(secret: str, timestamp_ms: int | None = None) -> dict[str, str]:
    """Query parameters for a signed custom robot webhook: {"timestamp": T, "sign": raw base64}.

    Pass them through a URL builder that encodes (`params=`, yarl) — never also quote them yourself."""
    ts = str(_now_ms() if timestamp_ms is None else timestamp_ms)
    return {"timestamp": ts, "sign": compute_sign(ts, secret)}


def robot_sign_query(secret: str, timestamp_ms: int | None = None) -> str:
    """The string to append to `…/robot/send?access_token=X`: "&timestamp=T&sign=S" with S URL-encoded once."""
    params = robot_sign_params(secret, timestamp_ms)
    return f"&timestamp={params['timestamp']}&sign={quote_plus(params['sign'])}"
