"""Who may call the pool, and the members' credential: secrets read from mounted files.

Secrets live in files (a Kubernetes Secret volume, or any directory standalone) and are
re-read when they change, so rotating a key needs no restart. Tokens are compared in
constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

from servicepool_api.policies import Access, SecretKeyRef, UpstreamAuth

log = logging.getLogger("servicepool.proxy")


def secret_path(secrets_dir: Path, ref: SecretKeyRef) -> Path:
    """Where a Secret key is mounted: <secrets dir>/<secret name>/<key>."""
    return secrets_dir / ref.secretName / ref.key


class SecretFile:
    """A secret's current content, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._text = ""
        self.refresh()

    def refresh(self) -> bool:
        """Re-read if the file changed; True when the content was (re)loaded."""
        try:
            stat = self.path.stat()
        except OSError:
            if self._stamp is not None:
                log.warning("secret file %s disappeared; keeping the last value", self.path)
            return False
        stamp = (stat.st_mtime_ns, stat.st_ino)
        if stamp == self._stamp:
            return False
        try:
            self._text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            log.warning("cannot read secret file %s: %s", self.path, exc.strerror)
            return False
        self._stamp = stamp
        return True

    @property
    def text(self) -> str:
        return self._text


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class ClientAuth:
    """Checks the client's token against the accepted ones."""

    def __init__(self, policy: Access, secrets_dir: Path) -> None:
        self.policy = policy
        self.file = SecretFile(secret_path(secrets_dir, policy.tokens)) if policy.tokens else None
        self._digests: list[bytes] = []
        self._load()

    def _load(self) -> None:
        if self.file is None:
            return
        tokens = [line.strip() for line in self.file.text.splitlines() if line.strip()]
        self._digests = [_digest(token) for token in tokens]

    def refresh(self) -> None:
        """Pick up a rotated Secret."""
        if self.file is not None and self.file.refresh():
            self._load()
            log.info("client tokens reloaded (%d accepted)", len(self._digests))

    def presented(self, header_value: str | None) -> str | None:
        """The token in the header value, per the scheme."""
        if not header_value:
            return None
        if self.policy.scheme == "Bearer":
            kind, _, token = header_value.partition(" ")
            return token.strip() if kind.lower() == "bearer" and token.strip() else None
        return header_value.strip()

    def allows(self, header_value: str | None) -> bool:
        """True when the header carries an accepted token (constant time per token)."""
        if self.file is None:
            return True
        token = self.presented(header_value)
        if token is None or not self._digests:
            return False
        given = _digest(token)
        matched = False
        for accepted in self._digests:  # compare with every token: no early exit
            matched |= hmac.compare_digest(given, accepted)
        return matched

    def challenge(self, pool: str) -> str:
        """The WWW-Authenticate value for a 401."""
        if self.policy.scheme == "Bearer":
            return f'Bearer realm="servicepool/{pool}"'
        return f'ApiKey realm="servicepool/{pool}", header="{self.policy.header}"'


class UpstreamCredential:
    """The header the proxy sets on every request to a member."""

    def __init__(self, policy: UpstreamAuth, secrets_dir: Path) -> None:
        self.policy = policy
        self.file = SecretFile(secret_path(secrets_dir, policy.secret))

    def refresh(self) -> None:
        self.file.refresh()

    def header(self) -> tuple[str, str] | None:
        """(name, value) to set, or None while the secret is not available."""
        value = self.file.text.strip()
        if not value:
            return None
        return self.policy.header, (self.policy.prefix or "") + value
