"""Model integrity: sha256 against the manifest, Ed25519 manifest signatures (vendor signs, device verifies)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgepad.engines.manifest import InputSpec, ModelManifest, TensorSpec, read_manifest, write_manifest
from edgepad.errors import ConfigError, IntegrityError, ManifestError
from edgepad.runtime.integrity import (generate_keypair, load_public_key, sign_manifest, signature_path,
                                       verify_model)


def make_model(tmp_path, name: str = "model.onnx"):
    artifact = tmp_path / name
    artifact.write_bytes(b"\x08\x07fake-onnx-bytes" * 64)
    m = ModelManifest(model="tiny", modalities=("rgb",), inputs={"rgb": InputSpec("rgb", (1, 3, 8, 8))},
                      outputs={"score": TensorSpec("score", (1,))}, threshold=0.62)
    write_manifest(m, artifact)
    return artifact


@pytest.fixture
def vendor(tmp_path):
    pytest.importorskip("cryptography")
    priv, pub = tmp_path / "vendor.key", tmp_path / "vendor.pub"
    raw_hex = generate_keypair(priv, pub)
    assert (priv.stat().st_mode & 0o777) == 0o600
    return priv, pub, raw_hex


def test_sha256_only(tmp_path):
    artifact = make_model(tmp_path)
    m = verify_model(artifact)
    assert m.threshold == 0.62 and len(m.artifact_sha256) == 64
    assert verify_model(artifact, read_manifest(artifact)).artifact_sha256 == m.artifact_sha256
    data = bytearray(artifact.read_bytes())
    data[100] ^= 0x01                                            # one flipped bit in the model
    artifact.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="differs from the manifest"):
        verify_model(artifact)


def test_missing_or_hashless_manifest_refused(tmp_path):
    artifact = make_model(tmp_path)
    mp = tmp_path / "model.onnx.json"
    d = json.loads(mp.read_text())
    d["artifact_sha256"] = None
    mp.write_text(json.dumps(d))
    with pytest.raises(IntegrityError, match="records no artifact_sha256"):
        verify_model(artifact)
    mp.unlink()
    with pytest.raises(ManifestError, match="no manifest"):
        verify_model(artifact)


def test_good_signature_accepted_in_every_key_form(tmp_path, vendor):
    priv, pub, raw_hex = vendor
    artifact = make_model(tmp_path)
    sig = sign_manifest(artifact, priv)
    assert sig == signature_path(artifact) == tmp_path / "model.onnx.json.sig"
    assert sig.read_text().startswith("ed25519:")
    for key in (pub, str(pub), pub.read_bytes(), raw_hex, "ed25519:" + raw_hex, bytes.fromhex(raw_hex),
                load_public_key(pub)):
        m = verify_model(artifact, public_key=key)
        assert m.model == "tiny"
    # a manifest object handed in must be the signed one
    assert verify_model(artifact, read_manifest(artifact), public_key=pub).threshold == 0.62
    with pytest.raises(IntegrityError, match="differs from the signed"):
        verify_model(artifact, read_manifest(artifact).replace(threshold=0.01), public_key=pub)


def test_tampered_artifact_refused_even_with_good_signature(tmp_path, vendor):
    priv, pub, _ = vendor
    artifact = make_model(tmp_path)
    sign_manifest(artifact, priv)
    artifact.write_bytes(artifact.read_bytes() + b"\x00")
    with pytest.raises(IntegrityError, match="sha256"):
        verify_model(artifact, public_key=pub)


def test_tampered_manifest_refused(tmp_path, vendor):
    priv, pub, _ = vendor
    artifact = make_model(tmp_path)
    sign_manifest(artifact, priv)
    mp = tmp_path / "model.onnx.json"
    d = json.loads(mp.read_text())
    d["threshold"] = 0.01                          # an attacker lowers the threshold: everything passes as live
    mp.write_text(json.dumps(d, indent=2) + "\n")
    with pytest.raises(IntegrityError, match="not signed by the configured vendor key"):
        verify_model(artifact, public_key=pub)
    verify_model(artifact)                          # without a key only the sha256 is checked: still matches


def test_manifest_rehashed_for_a_swapped_model_refused(tmp_path, vendor):
    priv, pub, _ = vendor
    artifact = make_model(tmp_path)
    sign_manifest(artifact, priv)
    artifact.write_bytes(b"another model entirely")
    write_manifest(read_manifest(artifact), artifact)            # consistent sha256, but not signed by the vendor
    verify_model(artifact)
    with pytest.raises(IntegrityError, match="not signed"):
        verify_model(artifact, public_key=pub)


def test_bad_signatures_refused(tmp_path, vendor):
    priv, pub, _ = vendor
    artifact = make_model(tmp_path)
    with pytest.raises(IntegrityError, match="signature .* is missing"):
        verify_model(artifact, public_key=pub)
    sig = sign_manifest(artifact, priv)
    good = sig.read_text()
    raw = bytearray(__import__("base64").b64decode(good.split(":", 1)[1]))
    raw[5] ^= 0x80
    sig.write_text("ed25519:" + __import__("base64").b64encode(bytes(raw)).decode())
    with pytest.raises(IntegrityError, match="not signed"):
        verify_model(artifact, public_key=pub)
    sig.write_text("ed25519:not base64!!")
    with pytest.raises(IntegrityError, match="malformed"):
        verify_model(artifact, public_key=pub)
    # signed by another vendor
    other_priv, other_pub = tmp_path / "other.key", tmp_path / "other.pub"
    generate_keypair(other_priv, other_pub)
    sign_manifest(artifact, other_priv)
    with pytest.raises(IntegrityError, match="not signed"):
        verify_model(artifact, public_key=pub)
    sign_manifest(artifact, priv)
    verify_model(artifact, public_key=pub)


def test_sign_refuses_a_manifest_that_does_not_match(tmp_path, vendor):
    priv, _, _ = vendor
    artifact = make_model(tmp_path)
    artifact.write_bytes(b"changed after the manifest was written")
    with pytest.raises(IntegrityError):
        sign_manifest(artifact, priv)
    assert not signature_path(artifact).exists()


def test_bad_keys(tmp_path, vendor):
    priv, pub, _ = vendor
    for bad in ("deadbeef", tmp_path / "missing.pub", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                12345):
        with pytest.raises(ConfigError):
            load_public_key(bad)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    ec_pub = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ConfigError, match="not Ed25519"):
        load_public_key(ec_pub)
    encrypted, enc_pub = tmp_path / "enc.key", tmp_path / "enc.pub"
    generate_keypair(encrypted, enc_pub, password=b"pw")
    artifact = make_model(tmp_path)
    with pytest.raises(ConfigError):
        sign_manifest(artifact, encrypted)                        # password needed
    sign_manifest(artifact, encrypted, password=b"pw")
    verify_model(artifact, public_key=enc_pub)


def test_missing_cryptography_is_a_typed_error(tmp_path):
    artifact = make_model(tmp_path)
    code = ("import sys; sys.modules['cryptography'] = None\n"
            "from edgepad.errors import MissingDependencyError\n"
            "from edgepad.runtime.integrity import verify_model\n"
            f"verify_model({str(artifact)!r})\n"                       # sha256 only: no cryptography needed
            "try:\n"
            f"    verify_model({str(artifact)!r}, public_key='00' * 32)\n"
            "except MissingDependencyError as e:\n"
            "    print('MISSING', e.extra)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "MISSING integrity"
