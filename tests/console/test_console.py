"""The operators' console in a real browser: log in, the dashboard's counts match what was sent, find an
application by IIN and by registration number, open its timeline and see a breach, retry a dead letter as an
admin and be refused as a viewer, switch language, log out; forms without their CSRF token are refused.
A screenshot of each page is written under the test's tmp dir."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx

from core.redact import redact
from gateway.storage import MessageQuery
from tests.console.conftest import Shots
from tests.intake.helpers import application_xml, envelope, post, sign
from tests.support.operators import ADMIN, ADMIN_PASSWORD, VIEWER, VIEWER_PASSWORD
from tests.workflow.conftest import Api, GatewayFactory, Receiver
from tests.workflow.helpers import PROVIDER_BIN, store

IIN = "760212350620"


def _send_applications(api: Api, pki: object, count: int) -> list[str]:
    numbers = []
    for _ in range(count):
        payload = sign(application_xml(iin=IIN, name="СЕРІКБАЕВ ДӘУРЕН", licensor_bin=PROVIDER_BIN), pki, "individual2")
        reply = post(api.server.url, envelope(payload, password="p"))
        assert reply.status_code == "SCSS001", reply.body
        numbers.append(reply.receipt("registrationNumber"))
    return numbers


def _login(page: object, url: str, name: str, password: str) -> None:
    page.goto(url + "/console")  # type: ignore[attr-defined]
    assert "/console/login" in page.url  # type: ignore[attr-defined]
    page.get_by_label(re.compile("User name|Имя пользователя|Пайдаланушы аты")).fill(name)  # type: ignore[attr-defined]
    page.get_by_label(re.compile("Password|Пароль|Құпиясөз")).fill(password)  # type: ignore[attr-defined]
    page.get_by_role("button", name=re.compile("Log in|Вход|Кіру")).click()  # type: ignore[attr-defined]
    page.wait_for_url(url + "/console")  # type: ignore[attr-defined]


def _wait_dead(api: Api, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(api.gw.storage.dead_letters()) < count:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_console_end_to_end_in_chromium(browser, gateway_factory: GatewayFactory, sqlite_url: str,  # noqa: ANN001
                                            receiver: Receiver, pki, shots: Shots) -> None:  # noqa: ANN001
    receiver.refusing = True
    api = gateway_factory(sqlite_url, max_attempts=1)
    sent = _send_applications(api, pki, 3)
    overdue = store(api.gw.storage, received_at=datetime.now(UTC) - timedelta(days=40),
                    due_at=datetime.now(UTC) - timedelta(days=20))
    registered = api.gw.storage.find_by_registration_number(sent[0])
    assert api.step(registered.id, "REGISTERED").status_code == 200  # its NOTIFICATION is refused: a dead letter
    _wait_dead(api, 1)
    url = api.server.url

    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url + "/console/outbox/dead")
    assert page.url.startswith(url + "/console/login")
    shots.take(page, "login")
    _login(page, url, VIEWER, VIEWER_PASSWORD)

    # The dashboard: 4 queued (3 sent, 1 stored), 1 dead letter, the breach of the overdue application.
    assert page.locator(f'[data-queue-depth="{PROVIDER_BIN}"]').inner_text() == "4"
    assert page.locator("[data-dead-letters]").inner_text() == "1"
    assert page.get_by_role("link", name=overdue.registration_number).first.is_visible()
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("[data-audit-state]").get_attribute("data-audit-state") == "ok"
    assert page.get_by_role("heading", name=re.compile("Message log integrity")).is_visible()
    shots.take(page, "dashboard")

    # Find by IIN (the three sent ones, newest first), then by registration number.
    page.get_by_role("navigation").get_by_role("link", name="Applications").click()
    page.get_by_label("IIN").fill(IIN)
    page.get_by_role("button", name="Search").click()
    assert page.locator("[data-found]").inner_text() == "3"
    found = page.locator("table.results tbody tr td:first-child").all_inner_texts()
    assert found == list(reversed(sent))
    shots.take(page, "search")
    page.get_by_label("IIN").fill("")
    page.get_by_label("Registration number").fill(overdue.registration_number)
    page.get_by_role("button", name="Search").click()
    assert page.locator("[data-found]").inner_text() == "1"
    page.get_by_role("link", name=overdue.registration_number).click()

    # Its timeline: the term and registration breached, marked so.
    page.wait_for_url(re.compile(r"/console/applications/MED-"))
    assert page.locator('[data-step="RESULT_PREPARED"]').get_attribute("data-state") == "BREACHED"
    assert page.locator('[data-step="REGISTERED"]').get_attribute("data-state") == "BREACHED"
    assert "breached" in page.locator('[data-step="RESULT_PREPARED"]').inner_text()
    shots.take(page, "application")

    # As a viewer: the dead letter is shown, with no retry; a retry posted anyway is refused.
    page.get_by_role("navigation").get_by_role("link", name="Dead letters").click()
    assert page.locator("tr[data-outbox-id]").count() == 1
    assert page.get_by_role("button", name=re.compile("Send again")).count() == 0
    shots.take(page, "dead-letters-viewer")
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    csrf = page.locator('form[action$="/console/logout"] input[name="csrf"]').get_attribute("value")
    outbox_id = page.locator("tr[data-outbox-id]").get_attribute("data-outbox-id")
    as_viewer = httpx.post(f"{url}/console/outbox/{outbox_id}/retry", data={"csrf": csrf}, cookies=cookies,
                           follow_redirects=False)
    assert as_viewer.status_code == 403
    # A form without its CSRF token is refused, though the session cookie is right.
    no_csrf = httpx.post(f"{url}/console/outbox/retry-all", data={}, cookies=cookies, follow_redirects=False)
    assert no_csrf.status_code == 403
    assert len(api.gw.storage.dead_letters()) == 1

    # The language is switched, and the choice kept.
    page.get_by_role("link", name="Қазақша").click()
    assert page.locator("html").get_attribute("lang") == "kk"
    assert page.get_by_role("heading", name="Жеткізілмеген хабарламалар").is_visible()
    page.get_by_role("navigation").get_by_role("link", name="Өтініштер").click()
    assert page.locator("html").get_attribute("lang") == "kk"
    shots.take(page, "search-kk")
    page.get_by_role("link", name="Русский").click()
    assert page.get_by_role("heading", name="Заявления").is_visible()
    page.get_by_role("link", name="English").click()

    # Logged out: the console asks for a login again, and the old cookie opens nothing.
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile("/console/login"))
    assert httpx.get(f"{url}/console", cookies=cookies, follow_redirects=False).status_code == 303

    # As an admin: retry the dead letter; it is delivered and logged with the admin's name.
    receiver.refusing = False
    _login(page, url, ADMIN, ADMIN_PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Dead letters").click()
    page.get_by_role("button", name=re.compile(f"Send again #{outbox_id}")).click()
    assert page.get_by_role("status").inner_text().startswith("Queued to be sent again")
    assert [m.status for m in receiver.wait_for(1)] == ["REGISTERED"]
    assert any(e.verdict == f"RETRY by {ADMIN}" for e in api.gw.storage.message_log(limit=50))
    shots.take(page, "dead-letters-admin")

    # On a phone's screen.
    phone = browser.new_context(locale="ru-RU", viewport={"width": 390, "height": 844})
    mobile = phone.new_page()
    _login(mobile, url, VIEWER, VIEWER_PASSWORD)
    assert mobile.locator("html").get_attribute("lang") == "ru"
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # nothing wider than the screen
    shots.take(mobile, "dashboard-phone")
    phone.close()
    context.close()
    assert len(shots.taken) == 8 and all(p.stat().st_size > 5000 for p in shots.taken)


def test_a_login_form_without_its_token_is_refused_and_failures_lock_out(gateway_factory: GatewayFactory,
                                                                        sqlite_url: str) -> None:
    api = gateway_factory(sqlite_url)
    url = api.server.url
    forged = httpx.post(f"{url}/console/login", data={"name": ADMIN, "password": ADMIN_PASSWORD, "csrf": "x"},
                        follow_redirects=False)
    assert forged.status_code == 403 and "licgate_session" not in forged.cookies
    with httpx.Client(base_url=url, follow_redirects=False, headers={"Accept-Language": "en"}) as client:
        def attempt(password: str) -> httpx.Response:
            form = client.get("/console/login").text
            token = re.search(r'name="csrf" value="([^"]+)"', form).group(1)
            return client.post("/console/login", data={"name": ADMIN, "password": password, "csrf": token})

        assert [attempt("wrong").status_code for _ in range(5)] == [401] * 5  # the fifth failure locks
        locked = attempt(ADMIN_PASSWORD)
        assert locked.status_code == 401 and "locked" in locked.text.lower()
        assert "licgate_session" not in client.cookies


def test_the_session_cookie_is_httponly_and_strict(gateway_factory: GatewayFactory, sqlite_url: str) -> None:
    api = gateway_factory(sqlite_url)
    with httpx.Client(base_url=api.server.url, follow_redirects=False) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
        answer = client.post("/console/login", data={"name": VIEWER, "password": VIEWER_PASSWORD, "csrf": token})
        assert answer.status_code == 303
        cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("licgate_session="))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
        behind_tls = client.post("/console/login", headers={"X-Forwarded-Proto": "https"},
                                 data={"name": VIEWER, "password": VIEWER_PASSWORD, "csrf": token})
        secure = next(h for h in behind_tls.headers.get_list("set-cookie") if h.startswith("licgate_session="))
        assert "Secure" in secure


def test_the_message_log_is_searched_in_chromium_and_admins_download_envelopes(
        browser, gateway_factory: GatewayFactory, sqlite_url: str, pki, shots: Shots) -> None:  # noqa: ANN001
    api = gateway_factory(sqlite_url)
    url = api.server.url
    sent = envelope(sign(application_xml(iin=IIN, licensor_bin=PROVIDER_BIN), pki, "individual2"),
                    message_id="console-msg-1", password="p")
    assert post(url, sent).status_code == "SCSS001"
    refused = envelope(sign(application_xml(iin=IIN, licensor_bin=PROVIDER_BIN), pki, "individual2"),
                       message_id="console-msg-2", password="wrong")
    assert post(url, refused).fault_code == "SENDER_AUTH_FAILED"
    deadline = time.monotonic() + 10  # refusals reach the log through its writer
    while not api.gw.storage.message_log(message_id="console-msg-2") and time.monotonic() < deadline:
        time.sleep(0.05)

    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    _login(page, url, VIEWER, VIEWER_PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Message log").click()
    page.get_by_label("Message id (messageId)").fill("console-msg-1")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile("message_id=console-msg-1"))
    rows = page.locator("table.messages tbody tr[data-record]")
    assert rows.count() >= 1
    assert all("console-msg-1" in r for r in rows.all_inner_texts())
    assert "SCSS001" in rows.first.inner_text() or "SCSS001" in rows.last.inner_text()
    assert page.get_by_role("link", name=re.compile("Download")).count() == 0  # a viewer reads no bodies
    page.get_by_label("Message id (messageId)").fill("")
    page.get_by_label("Verdict").fill("SENDER_AUTH_FAILED")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(re.compile("verdict=SENDER_AUTH_FAILED"))
    found = page.locator("table.messages tbody tr[data-record]").all_inner_texts()
    assert page.locator("[data-found]").inner_text() == str(len(found)) and found  # the request and its answer
    assert all("console-msg-2" in r and "SENDER_AUTH_FAILED" in r for r in found)
    shots.take(page, "messages")
    record = page.locator("table.messages tbody tr[data-record]").first.get_attribute("data-record")
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    assert httpx.get(f"{url}/console/messages/{record}/body", cookies=cookies).status_code == 403
    bad_time = httpx.get(f"{url}/console/messages?since=nonsense", cookies=cookies, headers={"Accept-Language": "en"})
    assert bad_time.status_code == 200 and "Not a time" in bad_time.text
    page.get_by_role("button", name="Log out").click()

    _login(page, url, ADMIN, ADMIN_PASSWORD)
    page.goto(url + "/console/messages?message_id=console-msg-1")
    inbound = [r for r in page.locator("table.messages tbody tr[data-record]").all()
               if r.locator("td").nth(2).inner_text() == "in"]
    assert inbound
    with page.expect_download() as download:
        inbound[-1].get_by_role("link", name=re.compile("Download")).click()
    assert download.value.suggested_filename.endswith(".xml")
    path = download.value.path()
    assert path is not None and open(path, "rb").read() == redact(sent)  # noqa: PTH123, SIM115 - password masked
    assert api.gw.storage.search_messages(MessageQuery(verdict=f"DOWNLOAD by {ADMIN}"))
    context.close()


def _events(response: httpx.Response) -> Iterator[tuple[str, str]]:
    """(event, data) of a text/event-stream, as they arrive."""
    event, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def test_the_live_counters_stream_needs_a_session_says_what_the_dashboard_says_is_capped_and_ends_at_logout(
        gateway_factory: GatewayFactory, sqlite_url: str, pki) -> None:  # noqa: ANN001
    from gateway.api.console import live_counters

    api = gateway_factory(sqlite_url)
    _send_applications(api, pki, 2)
    url = api.server.url
    assert httpx.get(f"{url}/console/events").status_code == 401
    assert httpx.get(f"{url}/console/events", cookies={"licgate_session": "forged"}).status_code == 401
    with httpx.Client(base_url=url, follow_redirects=False, timeout=20) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text).group(1)
        assert client.post("/console/login", data={"name": VIEWER, "password": VIEWER_PASSWORD,
                                                    "csrf": token}).status_code == 303
        with client.stream("GET", "/console/events") as stream:
            assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
            events = _events(stream)
            kind, data = next(events)
            counters = json.loads(data)
            now = live_counters(api.gw)  # the chain may have grown since (its sequencer runs apart)
            assert kind == "counters" and 1 <= counters.pop("audit_records") <= now.pop("audit_records")
            assert counters == now and counters["queues"] == {PROVIDER_BIN: 2}
            page = client.get("/console").text  # the cells the stream updates say the same
            cells = dict(re.findall(r'data-(queue-depth="\d+"|outbox-pending|dead-letters)[^>]*>(\d+)<', page))
            assert cells == {f'queue-depth="{PROVIDER_BIN}"': "2", "outbox-pending": str(counters["outbox_pending"]),
                             "dead-letters": str(counters["dead_letters"])}
            # A session holds at most four streams: the fifth is told to come back later and ends.
            extra = [client.stream("GET", "/console/events") for _ in range(3)]
            opened = [cm.__enter__() for cm in extra]
            readers = [_events(s) for s in opened]  # kept: a reader dropped closes its response
            assert [next(r)[0] for r in readers] == ["counters"] * 3
            with client.stream("GET", "/console/events") as fifth:
                assert fifth.status_code == 200 and list(_events(fifth)) == []
            for cm in extra:
                cm.__exit__(None, None, None)
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
            assert client.post("/console/logout", data={"csrf": csrf}).status_code == 303
            started = time.monotonic()
            assert list(events) == []  # the stream ends with the session
            assert time.monotonic() - started < 10


def test_the_dashboard_counts_new_applications_without_a_reload_in_chromium(
        browser, gateway_factory: GatewayFactory, sqlite_url: str, pki) -> None:  # noqa: ANN001
    from playwright.sync_api import expect

    api = gateway_factory(sqlite_url)
    _send_applications(api, pki, 1)
    url = api.server.url
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    _login(page, url, VIEWER, VIEWER_PASSWORD)
    depth = page.locator(f'[data-queue-depth="{PROVIDER_BIN}"]')
    assert depth.inner_text() == "1"
    page.wait_for_selector('[data-live="on"]', timeout=15_000)
    assert page.get_by_text("The figures update by themselves").is_visible()
    page.evaluate("window.licgateMark = 'not reloaded'")
    _send_applications(api, pki, 2)
    expect(depth).to_have_text("3", timeout=15_000)  # pushed: no reload (the page's CSP forbids eval, too)
    assert page.evaluate("window.licgateMark") == "not reloaded"
    context.close()
