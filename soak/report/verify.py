"""Checks a report directory against its manifest: every digest, and the signature; says exactly what fails."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from soak.paths import PathEscape, contained
from soak.report.manifest import MANIFEST, MANIFEST_FORMAT, SIGNATURE, sha256_of
from soak.report.signing import SigningKeyError, load_public_key, public_pem


@dataclass
class Verification:
    """What held and what failed; `ok` only when nothing failed."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check held."""
        return not self.failed


def verify_report(report_dir: Path, *, trusted_key: Path | None = None) -> Verification:
    """Check each listed file's SHA-256 and the manifest's signature (against trusted_key when given)."""
    result = Verification()
    manifest_path = report_dir / MANIFEST
    try:
        body = manifest_path.read_bytes()
        manifest = json.loads(body)
    except OSError:
        result.failed.append(f"{MANIFEST}: missing; this is not a report directory written by `soak report`")
        return result
    except ValueError:
        result.failed.append(f"{MANIFEST}: not valid JSON (edited or truncated)")
        return result
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        result.failed.append(f"{MANIFEST}: not a {MANIFEST_FORMAT} manifest")
        return result
    listed: set[str] = set()
    for entry in manifest.get("files", []):
        name = str(entry.get("path", ""))
        try:
            # Also refuses a symlink planted in the directory that points elsewhere.
            path = contained(report_dir, name)
        except PathEscape:
            result.failed.append(f"{MANIFEST}: lists {name!r}, a path outside the report directory")
            continue
        listed.add(name)
        if not path.is_file():
            result.failed.append(f"{name}: missing")
        elif sha256_of(path) != entry.get("sha256"):
            result.failed.append(f"{name}: SHA-256 differs from the manifest (the file changed after the report)")
        else:
            result.passed.append(f"{name}: SHA-256 matches")
    for path in sorted(report_dir.rglob("*")):
        name = path.relative_to(report_dir).as_posix()
        if path.is_file() and name not in listed and name not in (MANIFEST, SIGNATURE):
            result.notes.append(f"{name}: not in the manifest (not covered by it)")
    _check_signature(report_dir, body, manifest, trusted_key, result)
    return result


def _check_signature(
    report_dir: Path, body: bytes, manifest: dict[str, object], trusted_key: Path | None, result: Verification
) -> None:
    signature_path = report_dir / SIGNATURE
    embedded = manifest.get("public_key")
    if not signature_path.is_file():
        if embedded or trusted_key is not None:
            result.failed.append(f"{SIGNATURE}: missing, but the report was signed or a trusted key was given")
        else:
            result.notes.append("unsigned: no signing key was configured (SOAK_REPORT_SIGNING_KEY)")
        return
    try:
        if trusted_key is not None:
            key = load_public_key(trusted_key.read_bytes(), source=str(trusted_key))
            if isinstance(embedded, str) and embedded.encode() != public_pem(key):
                result.failed.append(f"{MANIFEST}: names a different public key than the trusted {trusted_key}")
        elif isinstance(embedded, str):
            key = load_public_key(embedded.encode(), source=f"{MANIFEST} public_key")
            result.notes.append(
                "signature checked against the key in the manifest itself; pass --public-key with the key you "
                "trust to know who signed it"
            )
        else:
            result.failed.append(f"{SIGNATURE}: present, but no public key to check it (pass --public-key)")
            return
        signature = base64.b64decode(signature_path.read_text().strip(), validate=True)
        key.verify(signature, body)
    except OSError as error:
        result.failed.append(f"{trusted_key}: cannot read: {error.strerror}")
    except SigningKeyError as error:
        result.failed.append(str(error))
    except (binascii.Error, ValueError):
        result.failed.append(f"{SIGNATURE}: not a base64 signature")
    except InvalidSignature:
        result.failed.append(
            f"{SIGNATURE}: signature does not match {MANIFEST} (the manifest changed, or another key signed it)"
        )
    else:
        result.passed.append(f"{SIGNATURE}: valid Ed25519 signature of {MANIFEST}")
