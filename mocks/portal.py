"""Mock of the egov.kz portal: an applicant (an individual, or a legal entity's first head) fills the
application, attaches documents, signs it with their own key and the portal submits it through SHEP as
`EGOV_PORTAL`; the personal cabinet follows the status from SHEP's pushes, and the applicant downloads
the licence or the motivated refusal once the portal has verified its signature.

The control API and views are those of every front office (`mocks.frontoffice`).
"""

from __future__ import annotations

from fastapi import FastAPI

from mocks.common import MockSettings, run_mock
from mocks.frontoffice import create_office_app


def create_app(settings: MockSettings) -> FastAPI:
    # The portal's signing widget makes the plain layout: ds: prefix, inclusive c14n, no comments.
    return create_office_app("portal", settings, title="egov.kz portal mock", request_prefix="0021",
                             sign_layout={"layout": "ds-prefix", "c14n": "inclusive"})


def main(host: str = "127.0.0.1", port: int = 9101, config: str | None = None) -> int:
    return run_mock("portal", create_app, host, port, config)
