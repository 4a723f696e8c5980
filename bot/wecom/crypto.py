"""WeCom callback verification and decryption (URL check GET and event POST) with a replay defence."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import time
from collections.abc import Callable
from urllib.parse import unquote

import xmltodict
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

__all__ = ["DEFAULT_MAX_BODY", "DEFAULT_WINDOW", "CallbackCrypto", "CallbackRejected", "ReplayGuard", "signature"]

DEFAULT_WINDOW = 300.0  # seconds a callback timestamp may differ from our clock, either way
DEFAULT_MAX_BODY = 64 * 1024  # bytes of a POST body
MAX_ECHOSTR = 4096  # characters of a GET echostr (real ones are ~90)
MAX_PARAM = 128  # characters of msg_signature / timestamp / nonce


class CallbackRejected(Exception):
    """A callback failed verification, decryption or parsing; `reason` is a short, stable, loggable phrase
    (never contains the token, key or plaintext). The adapter answers 4xx and logs the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """WeCom's msg_signature: sha1 of the four strings sorted lexicographically and concatenated (hex)."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypt])).encode("utf-8")).hexdigest()


class ReplayGuard:
    """Rejects callbacks whose timestamp is outside ±window of our clock, and a (timestamp, nonce) pair seen
    before within the window. Entries are forgotten once their timestamp leaves the window (the timestamp
    check rejects them from then on); at most max_entries are kept (oldest dropped first).

    The pair rather than the bare nonce is remembered: the signature covers both, so a replay must repeat
    both, and two genuine callbacks that happen to draw the same 8–10 digit nonce in one window are not
    mistaken for a replay. Per process: with several instances the inbound dedupe_key is the backstop."""

    def __init__(self, window: float = DEFAULT_WINDOW, *, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.time) -> None:
        if window <= 0:
            raise ValueError("window must be positive")
        self.window = window
        self.max_entries = max_entries
        self._clock = clock
        self._seen: dict[tuple[int, str], float] = {}
        self._expiry: list[tuple[float, tuple[int, str]]] = []

    def check_timestamp(self, timestamp: str) -> int:
        """The timestamp as an int; CallbackRejected when it is not a plain integer or outside the window."""
        if not timestamp.isascii() or not timestamp.isdigit():
            raise CallbackRejected("bad timestamp")
        ts = int(timestamp)
        if abs(self._clock() - ts) > self.window:
            raise CallbackRejected("stale timestamp")
        return ts

    def check_unseen(self, ts: int, nonce: str) -> None:
        """CallbackRejected when this (timestamp, nonce) was already accepted within the window."""
        self._prune()
        if (ts, nonce) in self._seen:
            raise CallbackRejected("replayed nonce")

    def remember(self, ts: int, nonce: str) -> None:
        """Record an accepted (timestamp, nonce) until the timestamp leaves the window."""
        key = (ts, nonce)
        if key in self._seen:
            return
        expires = ts + self.window
        self._seen[key] = expires
        heapq.heappush(self._expiry, (expires, key))
        while len(self._seen) > self.max_entries:
            _, old = heapq.heappop(self._expiry)
            self._seen.pop(old, None)

    def release(self, ts: int, nonce: str) -> None:
        """Forget an accepted pair so WeCom's retry of the same request is let through (call it when the
        callback could not be stored after all; the inbound dedupe_key still stops double processing)."""
        self._seen.pop((ts, nonce), None)

    def _prune(self) -> None:
        now = self._clock()
        while self._expiry and self._expiry[0][0] < now:
            _, key = heapq.heappop(self._expiry)
            self._seen.pop(key, None)

    def __len__(self) -> int:
        return len(self._seen)


class CallbackCrypto:
    """Verifies and decrypts the callbacks of one self-built app (receiveid = CorpID).

    Every failure — missing or oversized parameter, stale timestamp, replay, bad signature (compared in
    constant time), malformed envelope, bad base64/ciphertext, wrong receiveid — raises CallbackRejected;
    no wechatpy, XML, base64 or struct exception escapes. Nonces are remembered only after a callback has
    been fully verified and decrypted, so forged requests cannot fill or poison the replay cache."""

    def __init__(self, token: str, encoding_aes_key: str, corp_id: str, *, window: float = DEFAULT_WINDOW,
                 max_body: int = DEFAULT_MAX_BODY, clock: Callable[[], float] = time.time,
                 replay_guard: ReplayGuard | None = None) -> None:
        if not token or not corp_id:
            raise ValueError("token and corp_id are required")
        if len(encoding_aes_key) != 43 or not encoding_aes_key.isascii() or not encoding_aes_key.isalnum():
            raise ValueError("EncodingAESKey must be 43 letters/digits")
        self._token = token
        self._crypto = WeChatCrypto(token, encoding_aes_key, corp_id)
        self.corp_id = corp_id
        self.max_body = max_body
        self.replay = replay_guard or ReplayGuard(window, clock=clock)

    def __repr__(self) -> str:  # never show the token or key
        return f"CallbackCrypto(corp_id={self.corp_id!r})"

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """The URL-check GET: verify the signature over echostr and return its exact decrypted plaintext.

        Takes the already URL-decoded query values. A `+` that a lax proxy turned into a space is turned
        back (base64 has no spaces), and a still percent-encoded echostr is decoded."""
        msg_signature, timestamp, nonce = self._params(msg_signature, timestamp, nonce)
        if not isinstance(echostr, str) or not echostr:
            raise CallbackRejected("missing echostr")
        if len(echostr) > MAX_ECHOSTR:
            raise CallbackRejected("echostr too long")
        if "%" in echostr:
            echostr = unquote(echostr)
        echostr = echostr.replace(" ", "+")
        return self._verify_and_decrypt(msg_signature, timestamp, nonce, echostr)

    def decrypt_post(self, msg_signature: str, timestamp: str, nonce: str, body: bytes | str) -> str:
        """An event POST: parse the envelope `<xml><Encrypt>…</Encrypt>…</xml>`, verify and decrypt; returns
        the plaintext XML of the message or event."""
        msg_signature, timestamp, nonce = self._params(msg_signature, timestamp, nonce)
        raw = body.encode("utf-8") if isinstance(body, str) else body
        if not isinstance(raw, bytes | bytearray):
            raise CallbackRejected("malformed body")
        if len(raw) > self.max_body:
            raise CallbackRejected("body too large")
        if not raw.strip():
            raise CallbackRejected("empty body")
        try:
            doc = xmltodict.parse(bytes(raw), disable_entities=True)
        except Exception:
            raise CallbackRejected("malformed body") from None
        envelope = doc.get("xml") if isinstance(doc, dict) else None
        encrypt = envelope.get("Encrypt") if isinstance(envelope, dict) else None
        if not isinstance(encrypt, str) or not encrypt.strip():
            raise CallbackRejected("missing Encrypt")
        return self._verify_and_decrypt(msg_signature, timestamp, nonce, encrypt.strip())

    def decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        """Verify and decrypt a bare `Encrypt` value (JSON-mode callbacks carry it in a JSON body)."""
        msg_signature, timestamp, nonce = self._params(msg_signature, timestamp, nonce)
        if not isinstance(encrypt, str) or not encrypt:
            raise CallbackRejected("missing Encrypt")
        if len(encrypt) > self.max_body:
            raise CallbackRejected("body too large")
        return self._verify_and_decrypt(msg_signature, timestamp, nonce, encrypt)

    def encrypt_reply(self, plaintext: str, nonce: str, timestamp: str | None = None) -> str:
        """A passive reply envelope (Encrypt, MsgSignature, TimeStamp, Nonce) for the plaintext reply XML."""
        ts = timestamp or str(int(time.time()))
        return str(self._crypto.encrypt_message(plaintext, nonce, ts))

    def release(self, timestamp: str, nonce: str) -> None:
        """Undo the replay record of a verified callback whose processing failed (e.g. the database
        insert raised), so WeCom's retry with the same timestamp and nonce is accepted."""
        if timestamp.isascii() and timestamp.isdigit():
            self.replay.release(int(timestamp), nonce)

    # -- internals ---------------------------------------------------------------------------------------

    @staticmethod
    def _params(msg_signature: object, timestamp: object, nonce: object) -> tuple[str, str, str]:
        out = []
        for name, value in (("msg_signature", msg_signature), ("timestamp", timestamp), ("nonce", nonce)):
            if not isinstance(value, str) or not value:
                raise CallbackRejected(f"missing {name}")
            if len(value) > MAX_PARAM or not value.isascii():
                raise CallbackRejected(f"bad {name}")
            out.append(value)
        return out[0], out[1], out[2]

    def _verify_and_decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        ts = self.replay.check_timestamp(timestamp)
        expected = signature(self._token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode("ascii"), msg_signature.lower().encode("ascii")):
            raise CallbackRejected("bad signature")
        self.replay.check_unseen(ts, nonce)
        try:
            # Signature already checked in constant time; wechatpy re-checks it, then decrypts.
            plain = self._crypto.decrypt_message({"Encrypt": encrypt}, expected, timestamp, nonce)
        except InvalidCorpIdException:
            raise CallbackRejected("receiveid mismatch") from None
        except InvalidSignatureException:
            raise CallbackRejected("bad signature") from None
        except Exception:
            raise CallbackRejected("bad ciphertext") from None
        if not isinstance(plain, str):
            raise CallbackRejected("bad ciphertext")
        self.replay.remember(ts, nonce)
        return plain
