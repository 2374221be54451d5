"""Mock of the Public Service Center's IS (ЦОН): a Center worker registers an application for an applicant
present in person, the Center's operator signs it under the Center's BIN, and the IS submits it through
SHEP as `CENTER_IS`. An incomplete package gets the refusal receipt at once (INTAKE_REFUSED, in Kazakh
and Russian). When the result arrives the applicant comes to collect it:
`POST /applications/{requestNumber}/handover` records the hand-over and tells the provider's IS
(`POST {provider}/handovers`), which records the regulation's DELIVERED step at the gateway through its
pull API. The Center has no other way to reach the gateway: DELIVERED is the provider's record.

The rest of the control API and the views are those of every front office (`mocks.frontoffice`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request

from mocks.common import MockSettings, iso_local, run_mock
from mocks.frontoffice import OfficeState, create_office_app

DEFAULT_WORKER = "Орталық қызметкері / работник ЦОН"


def create_app(settings: MockSettings) -> FastAPI:
    # The NCA layout many Kazakh systems use: SignedInfo inclusive c14n, reference c14n#WithComments.
    app = create_office_app("center", settings, title="Public Service Center IS mock", request_prefix="CON-",
                            sign_layout={"layout": "ds-prefix", "c14n": "inclusive", "with_comments": True})
    state: OfficeState = app.state.office

    @app.post("/applications/{request_number}/handover")
    async def handover(request_number: str, request: Request) -> dict[str, Any]:
        record = state.record(request_number)
        if record.status not in ("GRANTED", "REFUSED") or not record.result_xml:
            raise HTTPException(409, f"nothing to hand over: the status is {record.status or 'unknown'}")
        if not record.result_verified:
            raise HTTPException(409, f"the result's signature did not verify: {record.result_check}")
        body = await request.body()
        worker = (await request.json()).get("worker", DEFAULT_WORKER) if body else DEFAULT_WORKER
        assert state.client is not None
        answer = await state.client.post(settings.urls.provider + "/handovers",
                                         json={"registration_number": record.registration_number, "by": worker})
        if answer.status_code != 200:
            state.log("handover-not-reported", request=request_number, http=answer.status_code)
            raise HTTPException(502, f"the provider's IS did not take the hand-over: HTTP {answer.status_code}")
        record.handed_over_at = iso_local()
        state.log("handed-over", request=request_number, registration=record.registration_number, worker=worker)
        return {"request_number": request_number, "handed_over_at": record.handed_over_at,
                "provider": answer.json()}

    return app


def main(host: str = "127.0.0.1", port: int = 9102, config: str | None = None) -> int:
    return run_mock("center", create_app, host, port, config)
