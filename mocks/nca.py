"""A stand-in for NCA RK's public services over HTTP: CRLs, an OCSP responder and the timestamping service.

Serves a PKI written by `signing.pki.init_pki` (or `licgate pki init DIR`):
- `GET /crl/{name}`: the DER CRLs of the PKI's `crl/` directory, full and delta (the certificates' CRL
  Distribution Points and Freshest CRL URLs);
- `GET /ca/{root|intermediate}.cer`: the CA certificates (the AIA caIssuers URL);
- `POST /ocsp` (`application/ocsp-request`): RFC 6960 answers signed by the delegated responder certificate
  (`parties/ocsp`), which is included in the response; for a certificate of the GOST intermediate, a GOST
  34.10-2015 answer signed by `parties/gost_ocsp` (named by its name). A certificate listed in a CRL of the PKI is
  "revoked", one listed in `pki.json` is "good", anything else "unknown". The CRL files are re-read on
  every request, so replacing a CRL changes the answers at once. Like NCA's own responder it can answer
  "tryLater" (every Nth request with `ocsp_try_later_every = N`, or every one after `POST /control/ocsp`
  with `{"try_later": true}`), which the gateway's CRL fallback must absorb.
- `POST /tsp` (`application/timestamp-query`): RFC 3161 answers (`application/timestamp-reply`) signed by
  the PKI's TSA (`parties/tsa`), for XAdES-T signatures (`signing.tsa`). A mock-only header
  `X-Mock-Days-Ago: N` backdates genTime by N days (the demo's application signed long ago).

`licgate mock nca --port P [--config FILE]`: FILE is TOML with `pki_dir = "..."` (default `./pki`) and
optionally `next_update_seconds = 3600` (the validity of an OCSP answer) and `ocsp_try_later_every = 0`.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi import FastAPI, HTTPException, Request, Response

from signing.gostpki import GostPrivateKey, load_gost_key, sign_ocsp_response
from signing.trust import public_key_bits
from signing.tsa import TimestampAuthority

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
TSP_QUERY = "application/timestamp-query"
TSP_REPLY = "application/timestamp-reply"


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
        self.gost: tuple[x509.Certificate, bytes, x509.Certificate, GostPrivateKey] | None = None
        gost_ocsp = manifest["parties"].get("gost_ocsp")
        if gost_ocsp and (pki_dir / "ca" / "gost_intermediate.pem").is_file():
            gost_intermediate = x509.load_pem_x509_certificate((pki_dir / "ca" / "gost_intermediate.pem").read_bytes())
            self.gost = (gost_intermediate, hashlib.sha1(public_key_bits(gost_intermediate)).digest(),  # noqa: S324
                         x509.load_pem_x509_certificate(Path(gost_ocsp["cert"]).read_bytes()),
                         load_gost_key(Path(gost_ocsp["key"]).read_bytes()))
        self.issuers = {self.intermediate.subject} | ({self.gost[0].subject} if self.gost else set())
        tsa = manifest["parties"].get("tsa")
        self.tsa = TimestampAuthority(Path(tsa["key"]).read_bytes(), Path(tsa["cert"]).read_bytes()) if tsa else None
        self.try_later_every = 0
        self.try_later = False
        self.ocsp_requests = 0
        self.tsp_requests = 0

    def answers_try_later(self) -> bool:
        self.ocsp_requests += 1
        every = self.try_later_every
        return self.try_later or (every > 0 and self.ocsp_requests % every == 0)

    def revoked(self) -> dict[int, datetime]:
        out: dict[int, datetime] = {}
        for path in sorted(self.crl_dir.iterdir()):
            data = path.read_bytes()
            try:
                crl = (x509.load_pem_x509_crl(data) if data.startswith(b"-----") else x509.load_der_x509_crl(data))
            except ValueError:
                continue
            if crl.issuer not in self.issuers:
                continue
            for entry in crl:
                out[entry.serial_number] = entry.revocation_date_utc
        return out

    def answer(self, request: ocsp.OCSPRequest) -> bytes:
        now = datetime.now(UTC)
        serial = request.serial_number
        builder = ocsp.OCSPResponseBuilder()
        # CertIDs with SHA-1 (what RFC 6960 clients send): anything else is not recognised as ours.
        sha1 = isinstance(request.hash_algorithm, hashes.SHA1)
        gost = self.gost is not None and sha1 and request.issuer_key_hash == self.gost[1]
        ours = gost or sha1 and request.issuer_key_hash == self.issuer_key_hash
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
        )
        if gost and self.gost is not None:
            _, _, responder, responder_key = self.gost
            return sign_ocsp_response(builder, responder, responder_key)
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder).certificates([self.responder])
        response = builder.sign(self.responder_key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)


def create_app(pki_dir: str | Path, *, next_update_seconds: int = 3600, ocsp_try_later_every: int = 0) -> FastAPI:
    nca = _Nca(Path(pki_dir), timedelta(seconds=next_update_seconds))
    nca.try_later_every = ocsp_try_later_every
    app = FastAPI(title="NCA RK mock (CRL, OCSP and TSP)")
    app.state.nca = nca

    @app.get("/crl/{name}")
    def crl(name: str) -> Response:
        path = nca.crl_dir / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPException(404, "no such CRL")
        return Response(path.read_bytes(), media_type="application/pkix-crl")

    @app.get("/ca/{name}.cer")
    def ca(name: str) -> Response:
        cert = {"root": nca.root, "intermediate": nca.intermediate,
                "gost_intermediate": nca.gost[0] if nca.gost else None}.get(name)
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
        if nca.answers_try_later():
            return Response(ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(serialization.Encoding.DER), media_type=OCSP_RESPONSE)
        return Response(nca.answer(ocsp_request), media_type=OCSP_RESPONSE)

    @app.post("/control/ocsp")
    async def control_ocsp(request: Request) -> dict[str, bool]:
        nca.try_later = bool((await request.json()).get("try_later"))
        return {"try_later": nca.try_later}

    @app.post("/tsp")
    async def tsp(request: Request) -> Response:
        if nca.tsa is None:
            raise HTTPException(404, "this PKI has no TSA (made by an older licgate pki init)")
        if request.headers.get("content-type", "").split(";")[0].strip() != TSP_QUERY:
            raise HTTPException(415, f"Content-Type must be {TSP_QUERY}")
        nca.tsp_requests += 1
        # A mock's knob, not RFC 3161: backdate the stamp, standing for a document stamped that long ago.
        days_ago = float(request.headers.get("x-mock-days-ago") or 0)
        gen_time = datetime.now(UTC) - timedelta(days=days_ago) if days_ago else None
        return Response(nca.tsa.respond(await request.body(), gen_time=gen_time), media_type=TSP_REPLY)

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

    uvicorn.run(create_app(pki_dir, next_update_seconds=int(settings.get("next_update_seconds", 3600)),
                           ocsp_try_later_every=int(settings.get("ocsp_try_later_every", 0))),
                host=host, port=port, log_config=None, access_log=False)
    return 0
