"""Ed25519 keys for signing report manifests (the `cryptography` package)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(ValueError):
    """A key file that cannot be used; the message names the file and the fix."""


def generate_key(private_path: Path) -> Path:
    """Write a new Ed25519 private key (PEM, mode 600) and its public key beside it (.pub); the public key's path."""
    if private_path.exists():
        raise SigningKeyError(f"{private_path} exists; remove it or choose another path (keys are never overwritten)")
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    public_path = private_path.with_name(private_path.name + ".pub")
    public_path.write_bytes(public_pem(key.public_key()))
    return public_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PEM file."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as error:
        raise SigningKeyError(f"SOAK_REPORT_SIGNING_KEY: cannot read {path}: {error.strerror}") from None
    except (ValueError, TypeError):
        raise SigningKeyError(
            f"SOAK_REPORT_SIGNING_KEY: {path} is not an unencrypted PEM private key; "
            "create one with `soak report keygen`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(
            f"SOAK_REPORT_SIGNING_KEY: {path} is not an Ed25519 key; create one with `soak report keygen`"
        )
    return key


def load_public_key(pem: bytes, *, source: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes; source names where they came from in the error."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise SigningKeyError(f"{source}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{source}: not an Ed25519 public key")
    return key


def public_pem(key: Ed25519PublicKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo)."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
