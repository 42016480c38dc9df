"""The manifest of a report directory: the SHA-256 of every file, signed with Ed25519 when a key is configured."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from soak.report.signing import public_pem

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
MANIFEST_FORMAT = "soak-report-manifest/1"
CHUNK_BYTES = 1 << 20


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(
    *, report_dir: Path, files: list[Path], about: dict[str, Any], key: Ed25519PrivateKey | None
) -> Path:
    """List every file with its digest and size in manifest.json; sign it into manifest.json.sig with key."""
    manifest = {
        "format": MANIFEST_FORMAT,
        **about,
        "files": [
            {
                "path": path.relative_to(report_dir).as_posix(),
                "sha256": sha256_of(path),
                "bytes": path.stat().st_size,
            }
            for path in sorted(files)
        ],
        "public_key": public_pem(key.public_key()).decode() if key is not None else None,
    }
    manifest_path = report_dir / MANIFEST
    body = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    manifest_path.write_bytes(body)
    signature_path = report_dir / SIGNATURE
    if key is not None:
        signature_path.write_text(base64.b64encode(key.sign(body)).decode() + "\n")
    else:
        signature_path.unlink(missing_ok=True)
    return manifest_path
