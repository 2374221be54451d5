"""EDS: verify and sign XML signatures, the NCA RK certificate profile, trust, revocation.

Entry points: `signing.verifier.build_verifier(trust_config, clock).verify_enveloped(payload)`,
`signing.signer.sign_enveloped(...)`, `signing.pki.init_pki(dir)`,
`signing.wsse` (WS-Security on the SOAP Body). Nothing here knows about HTTP endpoints or storage.
"""
