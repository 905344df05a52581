"""The support inbox in a real browser (Debian's Chromium driven by Playwright) on a real broker.

Real parts: the suite's Kafka broker, ``brand-listener inbox`` as a subprocess
(two of them for the replica check), routed Mentions produced straight onto
``mentions.needs-response`` (the worker's routing is tested elsewhere), and
headless ``/usr/bin/chromium``. Never ``playwright install``: the browser is
the system one. Screenshots go to the test's tmp dir, and also to
``$INBOX_SCREENSHOT_DIR`` when set (how docs/inbox-*.png were made).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from agents.inbox.auth import hash_password
from agents.queue.corrections import decode_correction
from integration.helpers import ROOT, Tail, produce
from listener.kafka_local import free_port
from listener.record import Author, Classification, Mention, Routing, encode_mention
from listener.topics import TopicNames

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
PASSWORDS = {"ann": "ann-lead-pw", "bob": "bob-agent-pw"}
HOSTILE_TEXT = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1"> help!'


class Inbox:
    """``python -m agents.commands.inbox`` as a subprocess."""

    def __init__(self, tmp: Path, bootstrap: str, topics: TopicNames, port: int = 0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"inbox-{self.port}.log"
        users = tmp / "users.yaml"
        if not users.exists():
            lines = ["users:"]
            for name, role in (("ann", "lead"), ("bob", "agent")):
                digest = hash_password(PASSWORDS[name], rounds=4)
                lines.append(f"  {name}: {{password_hash: '{digest}', role: {role}}}")
            users.write_text("\n".join(lines) + "\n")
        self.args = [
            sys.executable, "-m", "agents.commands.inbox", "--users", str(users),
            "--bootstrap", bootstrap, "--topic-prefix", topics.prefix,
            "--port", str(self.port), "--insecure-cookies", "--secret", "s" * 32,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Inbox:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"inbox exited:\n{self.log.read_text()}"
            if self.get("/health")[0] == 200:
                return self
            time.sleep(0.2)
        raise AssertionError(f"inbox not healthy after {timeout}s:\n{self.log.read_text()}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=3) as response:  # noqa: S310
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def routed(
    native: str, text: str, priority: str = "P2", due_s: float = 3600, **extra: object
) -> Mention:
    now = datetime.now(UTC)
    scores = {"complaint": 0.81, "praise": 0.03, "question": 0.12, "other": 0.04}
    fields: dict[str, object] = {
        "author": Author(name="Dana Reyes", handle="dana.example", followers=1250),
        "url": f"https://bsky.app/profile/dana.example/post/{native}",
        "brands": ("AcmeBank",),
        "signals": {"vetting": {"score": 0.08, "spam": False, "bot": False}},
        **extra,
    }
    return Mention(
        id=f"bluesky:{native}", source="bluesky", text=text, created_at=now, ingested_at=now,
        classification=Classification(label="complaint", scores=scores, model="intent-minilm@2"),
        routing=Routing(
            needs_response=True, priority=priority, team="support",  # type: ignore[arg-type]
            sla_due_at=now + timedelta(seconds=due_s), rule_ids=("complaint-default", "p1-outage"),
        ),
        stage_times={"ingested": now.timestamp(), "routed": now.timestamp()},
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def send(bootstrap: str, topics: TopicNames, *mentions: Mention) -> None:
    produce(
        bootstrap, topics.needs_response, [(m.id.encode(), encode_mention(m)) for m in mentions]
    )


def item_url(inbox: Inbox, mention_id: str) -> str:
    return f"{inbox.url}/item?id={urllib.parse.quote(mention_id, safe='')}"


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


def login(
    browser: Browser, inbox: Inbox, user: str, **options: object
) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, **options)  # type: ignore[arg-type]
    page = context.new_page()
    page.on("dialog", lambda dialog: pytest.fail(f"a dialog opened: {dialog.message}"))
    page.goto(inbox.url + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_url(inbox.url + "/")
    return context, page


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=False)
    if os.environ.get("INBOX_SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["INBOX_SCREENSHOT_DIR"]) / name)


def test_live_queue_claim_respond_correct_restart(
    kafka_bootstrap: str, topics: TopicNames, tmp_path: Path, browser: Browser
) -> None:
    inbox = Inbox(tmp_path, kafka_bootstrap, topics).start()
    replica: Inbox | None = None
    try:
        _, ann = login(browser, inbox, "ann")
        _, bob = login(browser, inbox, "bob")
        ann.wait_for_selector("body[data-live='1']")
        # Items appear live without a reload, in priority then due-time order.
        first = routed(
            "outage-1", "@AcmeBank card payments failing since 9am, nothing works", "P1", 1800
        )
        started = time.monotonic()
        send(kafka_bootstrap, topics, first)
        ann.wait_for_selector(".row[data-id='bluesky:outage-1']", timeout=3000)
        delay = time.monotonic() - started
        print(f"item shown in the browser {delay:.3f}s after it was routed")
        assert delay < 1.5, f"item shown {delay:.2f}s after it was routed"
        send(
            kafka_bootstrap, topics,
            routed("refund-2", "Still waiting for my refund from @AcmeBank, 3 weeks", "P2", 7200),
            routed("q-3", "@AcmeBank does the savings account have a monthly fee?", "P3", 86400),
            routed("late-4", "@AcmeBank nobody answers the phone. Again.", "P2", -600),
            routed("p1-soon", "@AcmeBank the app logged me out and my account shows $0", "P1", 900),
        )  # fmt: skip
        expect(ann.locator(".row")).to_have_count(5)
        ids = [r.get_attribute("data-id") for r in ann.locator(".row").all()]
        order = ["p1-soon", "outage-1", "late-4", "refund-2", "q-3"]
        assert ids == [f"bluesky:{n}" for n in order]
        expect(ann.locator(".row[data-id='bluesky:late-4']")).to_have_class(re.compile("breached"))
        countdown = ann.locator(".row[data-id='bluesky:outage-1'] .countdown")
        expect(countdown).to_contain_text("left")
        expect(ann.locator("#total")).to_have_text("5")  # the filter counts follow live
        expect(ann.locator("#facets a.on", has_text="active")).to_contain_text("5")
        time.sleep(1.6)  # the new rows' highlight fades
        shoot(ann, tmp_path, "inbox-queue.png")

        # Claim in one context: the other sees who holds it within 2 s and cannot claim it.
        bob.goto(item_url(inbox, first.id))
        bob.wait_for_selector("body[data-live='1']")
        ann.goto(item_url(inbox, first.id))
        ann.click("button[data-action=claim]")
        expect(ann.locator("#holder")).to_contain_text("Claimed by ann")
        expect(bob.locator("#holder")).to_contain_text("Claimed by ann", timeout=2000)
        assert bob.locator("button[data-action=claim]").count() == 0
        assert bob.locator("button[data-action=take_over]").count() == 0  # bob is an agent

        # First response: the countdown stops, an ack reaches mentions.acks, the metric moves.
        ann.click("button[data-action=first_response]")
        stopped = ann.locator(".countdown")
        expect(stopped).to_have_text("responded")
        assert stopped.get_attribute("data-stopped")
        time.sleep(1.2)
        expect(stopped).to_have_text("responded")
        metrics = inbox.get("/metrics")[1]
        assert re.search(
            r"brandlistener_inbox_time_to_first_response_seconds_count"
            r'\{priority="P1",team="support"\} 1\.0',
            metrics,
        ), metrics
        acks = Tail(kafka_bootstrap, topics.acks)
        acks.until(lambda: bool(acks.records), 15)
        assert [(k, orjson.loads(v)["by"]) for k, v in acks.records] == [(first.id.encode(), "ann")]
        acks.close()

        # Label correction: a correction record on mentions.corrections.
        ann.select_option("#label-select", "question")
        ann.click("button[data-action=correct_label]")
        expect(ann.locator(".item-head .chip")).to_have_text("question")
        corrections = Tail(kafka_bootstrap, topics.corrections)
        corrections.until(lambda: bool(corrections.records), 15)
        correction = decode_correction(corrections.records[-1][1])
        corrections.close()
        assert (correction.id, correction.old_label, correction.new_label, correction.by) == (
            first.id, "complaint", "question", "ann"
        )  # fmt: skip
        history = ann.locator(".history li").all_inner_texts()
        assert [h.split(" via ")[0].split(" UTC ")[1] for h in history] == [
            "ann correct label → question", "ann first response", "ann claim"
        ]  # fmt: skip
        shoot(ann, tmp_path, "inbox-item.png")
        ann.set_viewport_size({"width": 390, "height": 844})
        shoot(ann, tmp_path, "inbox-item-phone.png")
        assert ann.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scroll
        ann.goto(inbox.url + "/")
        shoot(ann, tmp_path, "inbox-queue-phone.png")
        assert ann.evaluate("document.documentElement.scrollWidth") <= 390
        assert not ann.locator("details.filters").evaluate("d => d.open")  # folded on a phone
        ann.set_viewport_size({"width": 1280, "height": 860})
        width = ann.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280

        # A second replica and a restarted first one show the same state.
        replica = Inbox(tmp_path, kafka_bootstrap, topics).start()
        inbox.stop()
        inbox = Inbox(tmp_path, kafka_bootstrap, topics, port=inbox.port).start()
        for server in (inbox, replica):
            ann.goto(item_url(server, first.id))
            expect(ann.locator("#holder")).to_contain_text("Claimed by ann")
            expect(ann.locator(".item-head .status")).to_have_text("responded")
            expect(ann.locator(".item-head .chip")).to_have_text("question")
            assert ann.locator(".history li").all_inner_texts() == history

        # An agent cannot claim or take over what another holds, even with a hand-made POST.
        bob.goto(item_url(inbox, first.id))
        csrf = bob.locator("input[name=csrf]").first.get_attribute("value")
        assert csrf
        for kind, refusal in (("claim", "take it over instead"), ("take_over", "only a lead")):
            form = {"csrf": csrf, "id": first.id, "kind": kind}
            page = bob.request.post(inbox.url + "/action", form=form).text()
            assert refusal in page, page[:3000]
        # A lead reassigns the team; marking the author as spam records the author key.
        ann.goto(item_url(inbox, first.id))
        ann.fill("input[name=team]", "billing")
        ann.click("button[data-action=reassign_team]")
        expect(ann.locator(".details dd").first).to_have_text("billing")
        expect(ann.locator("#holder")).to_contain_text("Nobody has claimed")
        ann.click("button[data-action=mark_spam]")
        expect(ann.locator(".details")).to_contain_text("Author marked as spam")
        spam = Tail(kafka_bootstrap, f"{topics.prefix}mentions.spam-authors")
        spam.until(lambda: bool(spam.records), 15)
        spam.close()
        assert [(k, orjson.loads(v)["by"]) for k, v in spam.records] == [
            (b"bluesky:dana.example", "ann")
        ]
    finally:
        inbox.stop()
        if replica is not None:
            replica.stop()


def test_login_csrf_and_hostile_markup(
    kafka_bootstrap: str, topics: TopicNames, tmp_path: Path, browser: Browser
) -> None:
    hostile = routed(
        "xss-1",
        HOSTILE_TEXT,
        author=Author(name='<img src=x onerror="window.__pwned=2">Eve', handle="eve<script>"),
        url="javascript:window.__pwned=3",
        reply_to_id="bluesky:xss-0",
        reply_to_author=Author(handle='<img src=x onerror="window.__pwned=5">acme'),
        signals={
            "vetting": {"note": "<script>window.__pwned=4</script>"},
            "reply_to_own_account": ["AcmeBank"],
        },
    )
    send(kafka_bootstrap, topics, hostile)
    inbox = Inbox(tmp_path, kafka_bootstrap, topics).start()
    try:
        # Nothing but /health and /metrics without a login.
        anonymous = browser.new_context()
        page = anonymous.new_page()
        for path in ("/", f"/item?id={urllib.parse.quote(hostile.id)}", "/?status=all"):
            page.goto(inbox.url + path)
            assert page.url == inbox.url + "/login", path
        request = anonymous.request
        assert request.get(inbox.url + "/events").status == 401
        form = {"id": hostile.id, "kind": "claim"}
        assert request.post(inbox.url + "/action", form=form).status == 401
        assert request.get(inbox.url + "/health").status == 200
        assert request.get(inbox.url + "/metrics").status == 200
        page.fill("input[name=username]", "ann")
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        expect(page.locator(".error")).to_contain_text("Wrong user name or password")
        anonymous.close()

        context, ann = login(browser, inbox, "ann")
        # A POST without the CSRF token is refused, even with the session cookie.
        assert context.request.post(inbox.url + "/action", form=form).status == 403
        assert context.request.post(inbox.url + "/action", form={**form, "csrf": "x"}).status == 403
        assert context.request.post(inbox.url + "/logout", form={}).status == 403

        # Markup in text, author and URL renders as inert text.
        ann.wait_for_selector(".row[data-id='bluesky:xss-1']")
        assert ann.locator(".row .text").inner_text().startswith("<script>window.__pwned=1")
        ann.goto(item_url(inbox, hostile.id))
        assert ann.locator("#post-text").inner_text() == HOSTILE_TEXT
        assert ann.locator(".author-line .author").inner_text().startswith("<img src=x")
        assert ann.locator("#source-url").inner_text() == "javascript:window.__pwned=3"
        assert ann.locator("#reply-to-author").inner_text() == (
            '<img src=x onerror="window.__pwned=5">acme (own account of AcmeBank)'
        )
        shoot(ann, tmp_path, "inbox-item-hostile.png")
        assert ann.locator("#source-link").count() == 0
        hrefs = ann.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
        assert not [h for h in hrefs if h and h.strip().lower().startswith("javascript")], hrefs
        assert ann.locator("script:not([src])").count() == 0
        assert ann.locator("img").count() == 0
        assert ann.evaluate("window.__pwned") is None
        ann.goto(inbox.url + "/")
        assert ann.evaluate("window.__pwned") is None
    finally:
        inbox.stop()
