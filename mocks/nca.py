"""A stand-in for NCA RK's public services over HTTP: CRL distribution points and an OCSP responder.

Serves a PKI written by `signing.pki.init_pki` (or `licgate pki init DIR`):
- `GET /crl/{name}`: the DER CRLs of the PKI's `crl/` directory (the certificates' CDP URLs);
- `GET /ca/{root|intermediate}.cer`: the CA certificates (the AIA caIssuers URL);
- `POST /ocsp` (`application/ocsp-request`): RFC 6960 answers signed by the delegated responder certificate
  (`parties/ocsp`), which is included in the response. A certificate listed in a CRL of the PKI is
  "revoked", one listed in `pki.json` is "good", anything else "unknown". The CRL files are re-read on
  every request, so replacing a CRL changes the answers at once.

`licgate mock nca --port P [--config FILE]`: FILE is TOML with `pki_dir = "..."` (default `./pki`) and
optionally `next_update_seconds = 3600` (the validity of an OCSP answer).
"""

from __future__ import annotations

import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi import FastAPI, HTTPException, Request, Response

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"


class _Nca:
    def __init__(self, pki_dir: Path, next_update: timedelta) -> None:
        self.dir = pki_dir
        self.next_update = next_update
        manifest = json.loads((pki_dir / "pki.json").read_text("utf-8"))
        self.known = {int(p["serial"], 16) for p in manifest["parties"].values()}
        self.crl_dir = Path(manifest["crl_dir"])
        self.intermediate = x509.load_pem_x509_certificate((pki_dir / "ca" / "intermediate.pem").read_bytes())
        self.root = x509.load_pem_x509_certificate((pki_dir / "ca" / "root.pem").read_bytes())
        ocsp_party = manifest["parties"]["ocsp"]
        self.responder = x509.load_pem_x509_certificate(Path(ocsp_party["cert"]).read_bytes())
        self.responder_key = serialization.load_pem_private_key(Path(ocsp_party["key"]).read_bytes(), None)
        self.issuer_key_hash = x509.SubjectKeyIdentifier.from_public_key(self.intermediate.public_key()).digest

    def revoked(self) -> dict[int, datetime]:
        out: dict[int, datetime] = {}
        for path in sorted(self.crl_dir.iterdir()):
            data = path.read_bytes()
            try:
                crl = (x509.load_pem_x509_crl(data) if data.startswith(b"-----") else x509.load_der_x509_crl(data))
            except ValueError:
                continue
            if crl.issuer != self.intermediate.subject:
                continue
            for entry in crl:
                out[entry.serial_number] = entry.revocation_date_utc
        return out

    def answer(self, request: ocsp.OCSPRequest) -> bytes:
        now = datetime.now(UTC)
        serial = request.serial_number
        builder = ocsp.OCSPResponseBuilder()
        # CertIDs with SHA-1 (what RFC 6960 clients send): anything else is not recognised as ours.
        ours = isinstance(request.hash_algorithm, hashes.SHA1) and request.issuer_key_hash == self.issuer_key_hash
        revoked = self.revoked()
        if ours and serial in revoked:
            status, when = ocsp.OCSPCertStatus.REVOKED, revoked[serial]
        elif ours and serial in self.known:
            status, when = ocsp.OCSPCertStatus.GOOD, None
        else:
            status, when = ocsp.OCSPCertStatus.UNKNOWN, None
        builder = builder.add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash, issuer_key_hash=request.issuer_key_hash,
            serial_number=serial, algorithm=request.hash_algorithm, cert_status=status,
            this_update=now - timedelta(minutes=1), next_update=now + self.next_update,
            revocation_time=when, revocation_reason=x509.ReasonFlags.key_compromise if when else None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder).certificates([self.responder])
        response = builder.sign(self.responder_key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)


def create_app(pki_dir: str | Path, *, next_update_seconds: int = 3600) -> FastAPI:
    nca = _Nca(Path(pki_dir), timedelta(seconds=next_update_seconds))
    app = FastAPI(title="NCA RK mock (CRL and OCSP)")
    app.state.nca = nca

    @app.get("/crl/{name}")
    def crl(name: str) -> Response:
        path = nca.crl_dir / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPException(404, "no such CRL")
        return Response(path.read_bytes(), media_type="application/pkix-crl")

    @app.get("/ca/{name}.cer")
    def ca(name: str) -> Response:
        cert = {"root": nca.root, "intermediate": nca.intermediate}.get(name)
        if cert is None:
            raise HTTPException(404, "no such CA")
        return Response(cert.public_bytes(serialization.Encoding.DER), media_type="application/pkix-cert")

    @app.post("/ocsp")
    async def ocsp_post(request: Request) -> Response:
        body = await request.body()
        try:
            ocsp_request = ocsp.load_der_ocsp_request(body)
        except ValueError:
            return Response(ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(serialization.Encoding.DER),
                media_type=OCSP_RESPONSE)
        return Response(nca.answer(ocsp_request), media_type=OCSP_RESPONSE)

    return app


def main(host: str = "127.0.0.1", port: int = 8088, config: str | None = None) -> int:
    settings: dict = {}
    if config:
        settings = tomllib.loads(Path(config).read_text("utf-8"))
    pki_dir = Path(settings.get("pki_dir", "./pki"))
    if config and not pki_dir.is_absolute():
        pki_dir = Path(config).resolve().parent / pki_dir
    if not (pki_dir / "pki.json").is_file():
        print(f"licgate mock nca: no test PKI in {pki_dir} (run `licgate pki init {pki_dir}`)")
        return 2
    import uvicorn

    uvicorn.run(create_app(pki_dir, next_update_seconds=int(settings.get("next_update_seconds", 3600))),
                host=host, port=port, log_config=None, access_log=False)
    return 0
