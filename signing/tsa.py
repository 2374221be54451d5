"""A timestamping authority (RFC 3161) for the mocks and tests: NCA RK's TSP service, played by the test PKI.

`TimestampAuthority(key_pem, cert_pem).respond(request_der)` answers a TimeStampReq with a TimeStampResp
(granted, or rejected with a failure reason); `token(data_hash, ...)` makes a token directly, at any
`gen_time` a test needs. Tokens are CMS SignedData over a TSTInfo, with the signed attributes contentType,
signingTime, messageDigest and an ESS SigningCertificateV2 (SHA-256) naming the TSA certificate, and the
TSA certificate in the SignedData when the request asks for it (`certReq`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from asn1crypto import algos, cms, core
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

TST_INFO = "1.2.840.113549.1.9.16.1.4"
POLICY = "1.2.398.3.3.2.6.1"  # an OID under NCA RK's arc, standing for its TSP policy in the test PKI
_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class TimestampAuthority:
    """Signs timestamp tokens with one RSA or ECDSA key and its certificate."""

    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("only RSA and ECDSA TSA keys are supported")
        self._key = key
        self.certificate = x509.load_pem_x509_certificate(cert_pem)
        self._cert_der = self.certificate.public_bytes(serialization.Encoding.DER)

    def respond(self, request_der: bytes, *, gen_time: datetime | None = None) -> bytes:
        """The TimeStampResp (DER) to a TimeStampReq (DER)."""
        try:
            request = asn1_tsp.TimeStampReq.load(request_der, strict=True)
            imprint = request["message_imprint"]
            algorithm = imprint["hash_algorithm"]["algorithm"].native
            hashed = imprint["hashed_message"].native
            nonce = request["nonce"].native
            cert_req = bool(request["cert_req"].native)
        except (ValueError, TypeError, KeyError):
            return _rejection("bad_data_format", "not a TimeStampReq")
        if algorithm not in _HASHES or len(hashed) != _HASHES[algorithm].digest_size:
            return _rejection("bad_alg", f"hash algorithm {algorithm} is not accepted")
        token = self.token(hashed, algorithm, gen_time=gen_time, nonce=nonce, include_certificate=cert_req)
        return asn1_tsp.TimeStampResp({
            "status": {"status": "granted"},
            "time_stamp_token": cms.ContentInfo.load(token),
        }).dump()

    def token(self, hashed: bytes, algorithm: str = "sha256", *, gen_time: datetime | None = None,
              nonce: int | None = None, include_certificate: bool = True) -> bytes:
        """A TimeStampToken (a DER ContentInfo) saying `hashed` existed at `gen_time` (default: now)."""
        gen_time = (gen_time or datetime.now(UTC)).astimezone(UTC)
        tst = {
            "version": "v1",
            "policy": POLICY,
            "message_imprint": {"hash_algorithm": {"algorithm": algorithm}, "hashed_message": hashed},
            "serial_number": int.from_bytes(os.urandom(16), "big"),
            "gen_time": gen_time,
            "accuracy": {"seconds": 1},
        }
        if nonce is not None:
            tst["nonce"] = nonce
        tst_der = asn1_tsp.TSTInfo(tst).dump()
        digest = hashes.Hash(hashes.SHA256())
        digest.update(tst_der)
        cert_hash = hashes.Hash(hashes.SHA256())
        cert_hash.update(self._cert_der)
        signed_attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": [TST_INFO]}),
            cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": gen_time})]}),
            cms.CMSAttribute({"type": "message_digest", "values": [digest.finalize()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2", "values": [
                {"certs": [{"hash_algorithm": {"algorithm": "sha256"}, "cert_hash": cert_hash.finalize()}]},
            ]}),
        ])
        to_sign = signed_attrs.dump()
        if isinstance(self._key, rsa.RSAPrivateKey):
            signature = self._key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
            signature_algorithm = "sha256_rsa"
        else:
            signature = self._key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
            signature_algorithm = "sha256_ecdsa"
        cert = asn1_x509.Certificate.load(self._cert_der)
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
                "issuer": cert.issuer, "serial_number": cert.serial_number}}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": signature_algorithm}),
            "signature": signature,
        })
        signed_data = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": TST_INFO, "content": core.ParsableOctetString(tst_der)},
            "signer_infos": [signer_info],
        }
        if include_certificate:
            signed_data["certificates"] = [cert]
        return cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed_data)}).dump()


def _rejection(failure: str, text: str) -> bytes:
    return asn1_tsp.TimeStampResp({
        "status": {"status": "rejection", "status_string": [text], "fail_info": {failure}},
    }).dump()


def request(hashed: bytes, algorithm: str = "sha256", *, nonce: int | None = None) -> bytes:
    """A TimeStampReq (DER) for `hashed`, asking for the TSA certificate in the token."""
    req = {"version": "v1", "message_imprint": {"hash_algorithm": {"algorithm": algorithm},
                                                "hashed_message": hashed}, "cert_req": True}
    if nonce is not None:
        req["nonce"] = nonce
    return asn1_tsp.TimeStampReq(req).dump()


def token_of(response_der: bytes) -> bytes:
    """The token of a granted TimeStampResp; ValueError naming the status otherwise."""
    response = asn1_tsp.TimeStampResp.load(response_der)
    status = response["status"]["status"].native
    if status not in ("granted", "granted_with_mods"):
        raise ValueError(f"the TSA answered {status}: {response['status']['status_string'].native}")
    return response["time_stamp_token"].dump()
