"""Encryption of stored secrets with the master key (Fernet; several keys for rotation)."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from coverline.config import Settings


class SecretUnreadable(ValueError):
    """A stored secret the master key in use cannot decrypt (another key wrote it)."""


class SecretBox:
    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one master key is needed")
        self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.master_key:
            keys = [part.strip() for part in settings.master_key.split(",") if part.strip()]
            return cls(keys)
        return cls([load_or_create_key_file(settings.data_dir / "master.key")])

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretUnreadable(
                "A stored secret cannot be decrypted with the master key."
            ) from exc


def load_or_create_key_file(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key().decode()
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    print(
        f"coverline: generated a master key in {path}; it encrypts the stored API secrets. "
        "Back it up, or set COVERLINE_MASTER_KEY.",
        file=sys.stderr,
    )
    return key


def secret_digest(secret: str) -> str:
    """Look-up digest of a high-entropy secret (not reversible, not a password hash)."""
    return hashlib.sha256(secret.encode()).hexdigest()
