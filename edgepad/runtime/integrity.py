"""Model integrity: refuse an artifact whose bytes or manifest were changed.

Two checks, both fail-closed:

1. **sha256**: the artifact (``.onnx``, ``.engine``, ``.pt`` and companion files) must hash to the manifest's
   ``artifact_sha256`` (:func:`edgepad.engines.manifest.verify_artifact`).
2. **signature** (optional; on when the device configuration holds a public key): the sidecar manifest
   ``<artifact>.json`` must carry a detached Ed25519 signature ``<artifact>.json.sig`` made by the vendor's
   private key. The signature covers the manifest file's exact bytes, and the manifest records the artifact's
   sha256, so one signature binds the artifact, its threshold and its preprocessing.

The vendor signs with :func:`sign_manifest` (keys from :func:`generate_keypair`); the device checks with
:func:`verify_model`. Ed25519 needs the ``cryptography`` package (extra ``integrity``), imported lazily.

Example:
    >>> manifest = verify_model("model.onnx", public_key="/etc/edgepad/vendor.pub")   # doctest: +SKIP
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import os
from pathlib import Path
from typing import Any

from edgepad._optional import lazy
from edgepad.engines.manifest import ModelManifest, manifest_path, read_manifest, verify_artifact
from edgepad.errors import ConfigError, IntegrityError, ManifestError

log = logging.getLogger(__name__)
ed25519 = lazy("cryptography.hazmat.primitives.asymmetric.ed25519", extra="integrity")
serialization = lazy("cryptography.hazmat.primitives.serialization", extra="integrity")
crypto_exceptions = lazy("cryptography.exceptions", extra="integrity")

#: suffix of the detached signature next to the manifest: ``model.onnx.json.sig``
SIGNATURE_SUFFIX = ".sig"
_SIG_HEADER = "ed25519:"


def signature_path(artifact: Path | str) -> Path:
    """Detached signature path of an artifact's manifest: ``model.onnx`` -> ``model.onnx.json.sig``."""
    mp = manifest_path(artifact)
    return mp.with_name(mp.name + SIGNATURE_SUFFIX)


def _decode_key_text(text: str) -> bytes | None:
    text = text.strip()
    if text.startswith(_SIG_HEADER):
        text = text[len(_SIG_HEADER):]
    for decode in (bytes.fromhex, lambda s: base64.b64decode(s, validate=True)):
        try:
            raw = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(raw) == 32:
            return raw
    return None


def load_public_key(spec: Any) -> Any:
    """Load an Ed25519 public key.

    Args:
        spec: an ``Ed25519PublicKey``; raw 32 bytes; PEM bytes; a string holding the raw key as hex or base64
            (optionally prefixed ``ed25519:``); or a path to a file with any of these (PEM ``PUBLIC KEY``,
            hex, base64 or 32 raw bytes).

    Returns:
        ``cryptography`` ``Ed25519PublicKey``.

    Raises:
        ConfigError: the key cannot be read or is not an Ed25519 public key.
        MissingDependencyError: ``cryptography`` is not installed.
    """
    if isinstance(spec, ed25519.Ed25519PublicKey):
        return spec
    data: bytes
    if isinstance(spec, (bytes, bytearray)):
        data = bytes(spec)
    elif isinstance(spec, (str, os.PathLike)):
        text = os.fspath(spec)
        raw = _decode_key_text(text) if isinstance(spec, str) else None
        if raw is not None:
            return ed25519.Ed25519PublicKey.from_public_bytes(raw)
        try:
            data = Path(text).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read public key {text!r}: {exc}; give a PEM file or the raw key as hex",
                              key="public_key") from exc
    else:
        raise ConfigError(f"public key must be bytes, a string or a path, got {type(spec).__name__}",
                          key="public_key")
    if len(data) == 32:
        return ed25519.Ed25519PublicKey.from_public_bytes(data)
    if b"-----BEGIN" in data:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise ConfigError(f"unreadable PEM public key: {exc}", key="public_key") from exc
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ConfigError(f"public key is {type(key).__name__}, not Ed25519", key="public_key")
        return key
    raw = _decode_key_text(data.decode("ascii", "replace"))
    if raw is None:
        raise ConfigError("public key is neither PEM, 32 raw bytes, hex nor base64 of an Ed25519 key",
                          key="public_key")
    return ed25519.Ed25519PublicKey.from_public_bytes(raw)


def load_private_key(spec: Any, password: bytes | None = None) -> Any:
    """Load an Ed25519 private key (``Ed25519PrivateKey``, PEM bytes, or a path to a PEM PKCS#8 file)."""
    if isinstance(spec, ed25519.Ed25519PrivateKey):
        return spec
    data = bytes(spec) if isinstance(spec, (bytes, bytearray)) else Path(os.fspath(spec)).read_bytes()
    if len(data) == 32 and b"-----BEGIN" not in data:
        return ed25519.Ed25519PrivateKey.from_private_bytes(data)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"unreadable PEM private key: {exc}", key="private_key") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"private key is {type(key).__name__}, not Ed25519", key="private_key")
    return key


def generate_keypair(private_path: Path | str, public_path: Path | str, password: bytes | None = None) -> str:
    """Create a vendor Ed25519 key pair: PKCS#8 PEM private key (mode 0600) and PEM public key.

    Returns:
        The raw public key as hex (what a device configuration may hold instead of the PEM file).
    """
    key = ed25519.Ed25519PrivateKey.generate()
    enc = (serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    fd = os.open(os.fspath(private_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = key.public_key()
    Path(public_path).write_bytes(pub.public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def sign_manifest(artifact: Path | str, private_key: Any, *, password: bytes | None = None,
                  verify_hash: bool = True) -> Path:
    """Sign ``<artifact>.json`` with the vendor's Ed25519 key; writes ``<artifact>.json.sig``.

    The signature covers the manifest file's bytes as they are on disk: sign after the last
    ``write_manifest``. By default the artifact is first checked against the manifest's sha256, so a vendor
    never signs a manifest that does not describe the file next to it.

    Args:
        artifact: the model file (``.onnx``, ``.engine``, ``.pt``) whose sidecar manifest to sign.
        private_key: ``Ed25519PrivateKey``, PEM bytes or a path to a PEM file.
        password: of an encrypted PEM private key.
        verify_hash: check the artifact's sha256 against the manifest before signing.

    Returns:
        The signature file path. Its content is one line: ``ed25519:<base64 signature>``.

    Raises:
        IntegrityError: the artifact does not match its manifest (with ``verify_hash``).
        ManifestError: the manifest is missing or invalid.
    """
    key = load_private_key(private_key, password)
    mp = manifest_path(artifact)
    try:
        data = mp.read_bytes()
    except OSError as exc:
        raise ManifestError(f"no manifest to sign next to {artifact}: {exc}", path=str(mp)) from exc
    manifest = _parse_manifest(data, mp)
    if verify_hash:
        verify_artifact(artifact, manifest)
    sig = key.sign(data)
    out = signature_path(artifact)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(_SIG_HEADER + base64.b64encode(sig).decode("ascii") + "\n", encoding="ascii")
    tmp.replace(out)
    return out


def _parse_manifest(data: bytes, mp: Path) -> Any:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"cannot parse manifest {mp}: {exc}", path=str(mp)) from exc
    return ModelManifest.from_dict(obj, path=str(mp))


def _read_signature(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"manifest signature {path.name} is missing and the device requires signed models; "
                             "ask the vendor for the signed manifest", path=str(path), field="signature") from None
    except OSError as exc:
        raise IntegrityError(f"cannot read signature {path}: {exc}", path=str(path), field="signature") from exc
    if len(data) == 64:
        return data
    text = data.decode("ascii", "replace").strip()
    if text.startswith(_SIG_HEADER):
        text = text[len(_SIG_HEADER):]
    try:
        sig = base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        sig = b""
    if len(sig) != 64:
        raise IntegrityError(f"signature file {path} is malformed (expected ed25519:<base64 of 64 bytes>)",
                             path=str(path), field="signature")
    return sig


def verify_signature(artifact: Path | str, public_key: Any) -> Any:
    """Check ``<artifact>.json.sig`` against the manifest bytes; return the manifest parsed from those bytes.

    Raises:
        IntegrityError: signature missing, malformed or not made by ``public_key``.
        ManifestError: manifest missing or invalid.
    """
    key = load_public_key(public_key)      # raises MissingDependencyError first when cryptography is absent
    mp = manifest_path(artifact)
    try:
        data = mp.read_bytes()     # read once: what is verified is what is parsed (no check-then-reread race)
    except OSError as exc:
        raise ManifestError(f"no manifest next to {artifact} (expected {mp.name}): {exc}", path=str(mp)) from exc
    sig = _read_signature(signature_path(artifact))
    try:
        key.verify(sig, data)
    except crypto_exceptions.InvalidSignature:
        raise IntegrityError(f"manifest {mp.name} is not signed by the configured vendor key (edited manifest, "
                             "wrong key or corrupt signature); refusing to load", path=str(mp),
                             field="signature") from None
    return _parse_manifest(data, mp)


def verify_model(artifact: Path | str, manifest: Any = None, public_key: Any = None) -> Any:
    """Refuse a model unless its bytes match its manifest and (with a key) the manifest is signed.

    Args:
        artifact: model file (``.onnx``, ``.engine``, ``.pt``).
        manifest: an already-read :class:`~edgepad.engines.manifest.ModelManifest`; None reads the sidecar.
            With ``public_key`` the sidecar is always read and verified, and a given ``manifest`` must equal it.
        public_key: the device's vendor key (see :func:`load_public_key`); None skips the signature check.

    Returns:
        The verified :class:`~edgepad.engines.manifest.ModelManifest`.

    Raises:
        IntegrityError: sha256 differs or is not recorded, signature missing/invalid, or ``manifest`` differs
            from the signed one.
        ManifestError: manifest missing or invalid.
        MissingDependencyError: ``public_key`` given but ``cryptography`` is not installed.
    """
    if public_key is not None:
        ed25519()                     # MissingDependencyError (extra integrity) before any file is read
        signed = verify_signature(artifact, public_key)
        if manifest is not None and manifest.to_dict() != signed.to_dict():
            raise IntegrityError(f"the manifest given for {artifact} differs from the signed sidecar; "
                                 "refusing to load", path=str(artifact), field="signature")
        manifest = signed
    elif manifest is None:
        manifest = read_manifest(artifact)
    verified = verify_artifact(artifact, manifest)
    log.info("model %s verified (sha256 %s…%s)", artifact, (verified.artifact_sha256 or "")[:12],
             ", signed" if public_key is not None else "")
    return verified
