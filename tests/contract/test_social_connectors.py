"""Tumblr, Flickr and LinkedIn on local wire-format servers: auth, paging, cursors, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

import pytest

from listener.brands import BrandMatcher, BrandSettings
from listener.connectors.base import Batch
from listener.errors import FatalError, RetryableError
from listener.own_accounts import OwnAccountSettings
from listener.record import Mention

from .poll_support import first_poll_error
from .servers import BRANDS, HARNESSES  # first: servers.py imports servers_social at its end
from .servers_social import FlickrHarness, LinkedInHarness, TumblrHarness

T = TypeVar("T")
pytestmark = pytest.mark.timeout(30)


def run(factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(factory())  # type: ignore[arg-type]


async def poll_all(conn: Any, cursor: str | None = None, max_polls: int = 20) -> list[Batch]:
    """Poll until the connector says it has caught up (``more`` false)."""
    batches = []
    for _ in range(max_polls):
        batch = await conn.poll(cursor)
        batches.append(batch)
        cursor = batch.cursor if batch.cursor is not None else cursor
        if not batch.more:
            break
    return batches


def ids(batches: list[Batch]) -> list[str]:
    return [m.id for b in batches for m in b.mentions]


# --- Tumblr ---------------------------------------------------------------------------------

T_PREFIX = "tumblr:7300000000000000"


def test_tumblr_pages_back_to_the_end_and_the_cursor_reads_only_newer_posts() -> None:
    async def go() -> tuple[TumblrHarness, list[Batch], list[Batch], list[Batch]]:
        h = TumblrHarness()
        await h.start()
        conn = h.connector(small=True)
        try:
            first = await poll_all(conn)
            again = await poll_all(conn, first[-1].cursor)
            h.posts.append({
                "type": "text", "blog_name": "late", "id_string": "730000000000000009",
                "timestamp": 1726136000, "tags": ["acme"], "body": "acme at last",
            })  # fmt: skip
            newer = await poll_all(conn, again[-1].cursor)
        finally:
            await conn.close()
            await h.stop()
        return h, first, again, newer

    h, first, again, newer = run(go)
    got = ids(first)
    assert sorted(got) == [f"{T_PREFIX}{n:02d}" for n in (1, 2, 3, 4, 6)]
    assert len(got) == len(set(got)), "a second shared across a page boundary is read once"
    befores = [r.query.get("before") for r in h.requests[: len(first)]]
    # the oldest second seen + 1; the page after [6, 4] holds 4 again (dropped) and then 3
    assert befores[:3] == [None, "1726135321", "1726135321"], befores
    assert all(r.query["filter"] == "text" and r.query["limit"] == "2" for r in h.requests)
    assert [s.reason for b in first for s in b.skipped][:1] == ["validation"]
    assert ids(again) == [], "nothing old from the returned cursor"
    assert ids(newer) == ["tumblr:730000000000000009"]
    assert json.loads(newer[-1].cursor or "")["acme"]["floor"] == 1726136000


def test_tumblr_text_is_plain_and_authors_and_reblogs_are_recorded() -> None:
    async def go() -> dict[str, Mention]:
        h = TumblrHarness()
        await h.start()
        conn = h.connector()
        try:
            return {m.id: m for b in await poll_all(conn) for m in b.mentions}
        finally:
            await conn.close()
            await h.stop()

    got = run(go)
    photo = got[f"{T_PREFIX}02"]
    assert "<" not in photo.text and "New Acme rocket skates!" in photo.text
    assert photo.text.endswith("#acme")
    assert "https://acme.example/skates" in photo.signals["links"]
    npf = got[f"{T_PREFIX}03"]
    assert npf.text.startswith("Does anyone know if the cloud plan includes backups?")
    assert npf.signals["links"] == ["https://acme.example/pricing"]
    text = got[f"{T_PREFIX}01"]
    assert text.author.id == "t:rrFan0001" and text.author.handle == "roadrunner-fan"
    assert text.author.url == "https://roadrunner-fan.tumblr.com/"
    assert text.url == "https://roadrunner-fan.tumblr.com/post/730000000000000001/acme-anvil"
    assert text.created_at.timestamp() == 1726135200
    assert text.reply_to_id is None and text.thread_id is None
    reblog = got[f"{T_PREFIX}04"]
    assert reblog.reply_to_id == reblog.thread_id == f"{T_PREFIX}01"
    quote = got[f"{T_PREFIX}06"]
    assert "Acme catalogue, 1949" in quote.text


def test_tumblr_posts_on_a_configured_tag_that_name_no_brand_are_not_kept() -> None:
    async def go() -> list[Mention]:
        h = TumblrHarness()
        await h.start()
        conn = h.connector(tags=("acme", "#anvils"))
        try:
            return [m for b in await poll_all(conn) for m in b.mentions]
        finally:
            await conn.close()
            await h.stop()

    fetched = run(go)
    kept = {m.id for m in fetched if BRANDS.apply(m) is not None}
    assert f"{T_PREFIX}07" in {m.id for m in fetched}, "read from the #anvils tag"
    assert f"{T_PREFIX}07" not in kept, "names no brand"
    assert f"{T_PREFIX}03" in kept, "its #acme tag names the brand"


@pytest.mark.parametrize("mode", ["key", "meta"])
def test_tumblr_rejected_key_is_fatal_with_a_clear_message(mode: str) -> None:
    async def go() -> FatalError:
        h = TumblrHarness()
        await h.start()
        conn = h.connector()
        if mode == "key":
            h.KEY = "another-key"  # the connector's key is no longer accepted
        else:
            h.meta_error_next = True
        try:
            return await first_poll_error(conn, FatalError)
        finally:
            await h.stop()

    message = str(run(go))
    assert "tumblr: HTTP 401" in message
    assert "api_key" in message if mode == "key" else "Unauthorized" in message


def test_tumblr_429_waits_for_the_exhausted_windows_reset_and_5xx_is_retried() -> None:
    async def go() -> tuple[RetryableError, RetryableError, int]:
        h = TumblrHarness()
        await h.start()
        conn = h.connector()
        try:
            h.limit_next = True
            with pytest.raises(RetryableError) as limited:
                await conn.poll(None)
            h.error_next = 503
            with pytest.raises(RetryableError) as down:
                await conn.poll(None)
            after = await conn.poll(None)
            return limited.value, down.value, len(after.mentions)
        finally:
            await conn.close()
            await h.stop()

    limited, down, read = run(go)
    assert limited.after == pytest.approx(1234.0)
    assert "HTTP 503" in str(down) and read == 5


def test_harnesses_registered() -> None:
    assert {"tumblr", "flickr", "linkedin"} <= set(HARNESSES)


# --- Flickr ---------------------------------------------------------------------------------

F_PHOTO = "flickr:531000000"
F_COMMENT = "flickr:6065-531000000{:02d}-721577000000000{:02d}"


def comment(photo: int, n: int, at: int, text: str) -> dict[str, Any]:
    return {"id": F_COMMENT.format(photo, n).removeprefix("flickr:"), "author": "77@N07",
            "authorname": "late", "datecreate": str(at), "_content": text}  # fmt: skip


def test_flickr_sweeps_search_then_comments_and_the_cursor_reads_only_newer() -> None:
    async def go() -> tuple[FlickrHarness, list[Batch], list[Batch], list[Batch]]:
        h = FlickrHarness()
        await h.start()
        conn = h.connector(small=True)
        try:
            first = await poll_all(conn)
            again = await poll_all(conn, first[-1].cursor)
            h.comments["53100000001"].append(comment(1, 9, 1726137000, "acme, again"))
            h.photos.append({**h.photos[0], "id": "53100000008", "dateupload": "1726138000"})
            newer = await poll_all(conn, again[-1].cursor)
        finally:
            await conn.close()
            await h.stop()
        return h, first, again, newer

    h, first, again, newer = run(go)
    got = ids(first)
    photos = [f"{F_PHOTO}{n:02d}" for n in (1, 2, 4, 5)]
    comments = [F_COMMENT.format(p, n) for p, n in ((1, 1), (1, 2), (5, 3), (5, 4))]
    assert sorted(got) == sorted(photos + comments) and len(got) == len(set(got))
    assert got.index(F_COMMENT.format(1, 1)) > got.index(f"{F_PHOTO}01"), "photos first"
    assert [s.reason for b in first for s in b.skipped] == ["validation"]  # no dateupload
    search = [r.query for r in h.requests if r.query["method"] == "flickr.photos.search"]
    assert [q["page"] for q in search[:3]] == ["1", "2", "3"]
    assert all(q["sort"] == "date-posted-desc" and q["text"] == "acme" for q in search)
    assert all(q["format"] == "json" and q["nojsoncallback"] == "1" for q in search)
    assert {"description", "date_upload", "owner_name", "tags"} <= set(
        search[0]["extras"].split(",")
    )
    assert ids(again) == [], "nothing old from the returned cursor"
    second = [r.query for r in h.requests[len(first) :]]
    assert second[0]["min_upload_date"] == "1726135320", "the newest upload second read"
    on_one = [q["min_comment_date"] for q in second if q.get("photo_id") == "53100000001"]
    assert on_one[0] == "1726136100", "the newest comment second read on that photo"
    assert sorted(ids(newer)) == sorted([F_COMMENT.format(1, 9), f"{F_PHOTO}08"])


def test_flickr_text_is_plain_and_comments_name_their_photo() -> None:
    async def go() -> dict[str, Mention]:
        h = FlickrHarness()
        await h.start()
        conn = h.connector()
        try:
            return {m.id: m for b in await poll_all(conn) for m in b.mentions}
        finally:
            await conn.close()
            await h.stop()

    got = run(go)
    photo = got[f"{F_PHOTO}01"]
    assert (
        photo.text == "Acme anvil, day one\n\nStraight from acme.example\nLove it\n\n#acme #anvil"
    )
    assert photo.signals["links"] == ["https://acme.example/anvils"]
    assert photo.url == "https://www.flickr.com/photos/roadrunner/53100000001/"
    assert photo.author.id == "11111111@N01" and photo.author.handle == "roadrunner"
    assert photo.reply_to_id is None and photo.created_at.timestamp() == 1726135200
    hostile = got[f"{F_PHOTO}02"]
    assert "<" not in hostile.text and "&amp;" not in hostile.text and "ACME rocket" in hostile.text
    assert hostile.url == "https://www.flickr.com/photos/22222222@N02/53100000002/"
    reply = got[F_COMMENT.format(5, 3)]
    assert reply.text == "@Acme Official when is the outage fixed?"
    assert reply.signals["links"] == ["https://www.flickr.com/photos/acmeofficial/"]
    assert reply.reply_to_id == reply.thread_id == f"{F_PHOTO}05"
    assert reply.author.id == "33333333@N03" and reply.author.name == "Wile E."
    assert reply.url and reply.url.endswith("#comment72157700000000003")


def test_flickr_own_photos_are_read_and_comments_naming_no_brand_kept_only_under_them() -> None:
    own = BrandMatcher([BrandSettings(
        name="acme", keywords=("acme",), hashtags=("acme",),
        own_accounts=OwnAccountSettings(other={"flickr": ("99999999@N00",)}),
    )])  # fmt: skip

    async def go() -> list[Mention]:
        h = FlickrHarness()
        await h.start()
        conn = h.connector(user_ids=("99999999@N00",), brands=own)
        try:
            return [m for b in await poll_all(conn) for m in b.mentions]
        finally:
            await conn.close()
            await h.stop()

    fetched = run(go)
    kept = {m.id: m for m in map(own.apply, fetched) if m is not None}
    assert f"{F_PHOTO}06" in kept and kept[f"{F_PHOTO}06"].own_account_of == ("acme",)
    assert F_COMMENT.format(5, 4) in kept, "'same question' under the brand's own photo"
    assert kept[F_COMMENT.format(5, 4)].signals["reply_to_own_account"] == ["acme"]
    assert F_COMMENT.format(1, 2) in {m.id for m in fetched}
    assert F_COMMENT.format(1, 2) not in kept, "'nice shot!' names no brand"


@pytest.mark.parametrize(
    ("fail", "kind", "text"),
    [
        ("key", FatalError, "error 100: Invalid API Key"),
        ((98, "Invalid auth token"), FatalError, "error 98"),
        ((105, "Service currently unavailable"), RetryableError, "error 105"),
        ((10, "Sorry, the Flickr search API is not currently available."), RetryableError, "10"),
        ((112, 'Method "x" not found'), FatalError, "request rejected"),
        (502, RetryableError, "HTTP 502"),
    ],
)
def test_flickr_error_bodies_map_to_error_kinds(
    fail: Any, kind: type[Exception], text: str
) -> None:
    async def go() -> Exception:
        h = FlickrHarness()
        await h.start()
        conn = h.connector()
        if fail == "key":
            h.KEY = "rotated"
        elif isinstance(fail, int):
            h.error_next = fail
        else:
            h.fail_next_code = fail
        try:
            return await first_poll_error(conn, kind)
        finally:
            await h.stop()

    error = run(go)
    assert text in str(error) and str(error).startswith("flickr: ")
    if kind is FatalError and fail == "key":
        assert "check 'api_key'" in str(error)


def test_flickr_a_deleted_photo_is_no_longer_watched() -> None:
    async def go() -> tuple[list[Batch], list[Batch]]:
        h = FlickrHarness()
        await h.start()
        conn = h.connector()
        try:
            first = await poll_all(conn)
            h.photos = [p for p in h.photos if p["id"] != "53100000001"]
            second = await poll_all(conn, first[-1].cursor)
            return first, second
        finally:
            await conn.close()
            await h.stop()

    first, second = run(go)
    assert "53100000001" in json.loads(first[-1].cursor or "")["watch"]
    assert "53100000001" not in json.loads(second[-1].cursor or "")["watch"]
    assert "53100000005" in json.loads(second[-1].cursor or "")["watch"]


# --- LinkedIn -------------------------------------------------------------------------------

L_POST = "linkedin:urn:li:share:7240000000000000001"
L_JOBS = "linkedin:urn:li:ugcPost:7240000000000000002"
# a comment URN: the post's activity number ends in {0}, the comment number in {1}
L_COMMENT = "linkedin:urn:li:comment:(urn:li:activity:72400000000000000{},72400000000000{})"
L_101 = L_COMMENT.format("01", "00101").removeprefix("linkedin:")  # a comment with a reply


def test_linkedin_reads_the_pages_posts_then_their_comments_and_resumes_from_the_cursor() -> None:
    async def go() -> tuple[LinkedInHarness, list[Batch], list[Batch], list[Batch]]:
        h = LinkedInHarness()
        await h.start()
        conn = h.connector(small=True)
        try:
            first = await poll_all(conn)
            again = await poll_all(conn, first[-1].cursor)
            h.comments["urn:li:ugcPost:7240000000000000002"].append({
                "id": "7240000000000000202", "actor": "urn:li:person:Late",
                "message": {"text": "acme, any news?"}, "created": {"time": 1726139000000},
            })  # fmt: skip
            newer = await poll_all(conn, again[-1].cursor)
        finally:
            await conn.close()
            await h.stop()
        return h, first, again, newer

    h, first, again, newer = run(go)
    comments = [L_COMMENT.format("01", "00101"), L_COMMENT.format("01", "00102"),
                L_COMMENT.format("01", "00103"), L_COMMENT.format("02", "00201")]  # fmt: skip
    assert sorted(ids(first)) == sorted([L_POST, L_JOBS, *comments])
    assert sorted(s.detail for b in first for s in b.skipped) == [
        "comment without id or created.time", "post without id"]  # fmt: skip
    assert all(r.headers["LinkedIn-Version"] == "202508" for r in h.requests)
    assert all(r.headers["X-Restli-Protocol-Version"] == "2.0.0" for r in h.requests)
    walk = [
        (r.path.split("/")[3], r.query["start"]) for r in h.requests if "socialActions" in r.path
    ]
    share, jobs = L_POST.removeprefix("linkedin:"), L_JOBS.removeprefix("linkedin:")
    assert walk[:5] == [(share, "0"), (share, "1"), (share, "2"), (L_101, "0"), (jobs, "0")], (
        "one comment a page (page_size=1), then the replies to 101 (its commentsSummary says 1)"
    )
    assert ids(again) == [L_POST, L_JOBS], "the posts again (for thread context), no comment"
    late = "linkedin:urn:li:comment:(urn:li:ugcPost:7240000000000000002,7240000000000000202)"
    assert sorted(ids(newer)) == sorted([L_POST, L_JOBS, late])


def test_linkedin_text_is_plain_and_replies_and_own_posts_are_linked() -> None:
    own = BrandMatcher([BrandSettings(
        name="acme", keywords=("acme",),
        own_accounts=OwnAccountSettings(other={"linkedin": ("urn:li:organization:2414183",)}),
    )])  # fmt: skip

    async def go() -> list[Mention]:
        h = LinkedInHarness()
        await h.start()
        conn = h.connector(brands=own)
        try:
            return [m for b in await poll_all(conn) for m in b.mentions]
        finally:
            await conn.close()
            await h.stop()

    fetched = run(go)
    got = {m.id: m for m in fetched}
    post = got[L_POST]
    assert post.text == "Acme cloud 3 is out! Thanks to @Acme Labs #acmecloud"
    assert post.url == "https://www.linkedin.com/feed/update/urn:li:share:7240000000000000001/"
    assert post.created_at.timestamp() == 1726135000
    upset = got[L_COMMENT.format("01", "00101")]
    assert upset.text == "Upgraded and my dashboards are gone again"
    assert upset.author.id == "urn:li:person:AbC123"
    assert upset.reply_to_id == upset.thread_id == L_POST
    kept = {m.id: m for m in map(own.apply, fetched) if m is not None}
    assert kept[L_JOBS].own_account_of == ("acme",), "the page's own post, naming no brand"
    remote = kept[L_COMMENT.format("02", "00201")]
    assert remote.signals["reply_to_own_account"] == ["acme"], "'Is this remote?' kept"


@pytest.mark.parametrize(
    ("setup", "kind", "text"),
    [
        ("token", FatalError, "re-authorize"),
        ("forbidden", FatalError, "ADMINISTRATOR"),
        ("version", FatalError, "LinkedIn-Version"),
        ("503", RetryableError, "HTTP 503"),
    ],
)
def test_linkedin_errors_map_to_error_kinds(setup: str, kind: type[Exception], text: str) -> None:
    async def go() -> Exception:
        h = LinkedInHarness()
        await h.start()
        conn = h.connector()
        if setup == "token":
            h.TOKEN = "expired"
        elif setup == "forbidden":
            h.forbidden = True
        elif setup == "version":
            h.ACTIVE_VERSIONS = frozenset({"202607"})
        else:
            h.fail_next = (503, "3")
        try:
            return await first_poll_error(conn, kind)
        finally:
            await h.stop()

    error = run(go)
    assert text in str(error) and str(error).startswith("linkedin: HTTP")
    if kind is RetryableError:
        assert getattr(error, "after", None) == pytest.approx(3.0)


def replies_read(h: LinkedInHarness, comment: str = L_101) -> list[str]:
    """The ``start`` of each request for ``comment``'s replies."""
    return [
        r.query["start"] for r in h.requests if r.path == f"/rest/socialActions/{comment}/comments"
    ]


def test_linkedin_reads_replies_to_comments_that_have_them_page_by_page() -> None:
    async def go() -> tuple[LinkedInHarness, list[str], list[str], list[Batch], list[Batch]]:
        h = LinkedInHarness()
        post = L_POST.removeprefix("linkedin:")
        more = h.add_replies(post, "7240000000000000101", ["acme fixed it", "not for me"],
                             1726137120000)  # fmt: skip
        more += h.add_replies(post, "7240000000000000101", ["<b>acme</b> & me"], 1726137300000,
                              parent=False)  # fmt: skip
        await h.start()
        conn = h.connector(small=True)
        try:
            first = await poll_all(conn)
            again = await poll_all(conn, first[-1].cursor)
            late = h.add_replies(post, "7240000000000000101", ["acme, still broken"], 1726140000000)
            newer = await poll_all(conn, again[-1].cursor)
        finally:
            await conn.close()
            await h.stop()
        return h, more, late, first, newer

    h, more, late, first, newer = run(go)
    read = ids(first)
    replies = [L_COMMENT.format("01", "00102"), *(f"linkedin:{urn}" for urn in more)]
    assert [read.count(r) for r in replies] == [1, 1, 1, 1], "each reply once"
    assert replies_read(h)[:4] == ["0", "1", "2", "3"], "4 replies, one a page"
    targets = {r.path.split("/")[3] for r in h.requests if "socialActions" in r.path}
    assert L_COMMENT.format("01", "00103").removeprefix("linkedin:") not in targets, "no replies"
    by_id = {m.id: m for b in first for m in b.mentions}
    for reply in replies:
        assert by_id[reply].reply_to_id == f"linkedin:{L_101}"
        assert by_id[reply].thread_id == L_POST
    hostile = by_id[replies[-1]]  # read without parentComment: the parent is the comment read
    assert hostile.text == "acme & me" and "<" not in hostile.text
    assert hostile.url == (
        "https://www.linkedin.com/feed/update/urn:li:share:7240000000000000001/?commentUrn="
        f"{quote(L_101, safe='')}&replyUrn={quote(more[-1], safe='')}"
    )
    assert len(replies_read(h)) == 4 + 5, "second sweep: count unchanged, not read; then 5"
    assert ids(newer) == [L_POST, L_JOBS, f"linkedin:{late[0]}"], "only the new reply"


@pytest.mark.parametrize("error", ["503", "token", "deleted"])
def test_linkedin_reply_errors_are_handled_like_the_other_calls(error: str) -> None:
    async def go() -> tuple[Exception | None, list[Batch]]:
        h = LinkedInHarness()
        await h.start()
        conn = h.connector()
        raised: Exception | None = None
        try:
            posts = await conn.poll(None)
            share = await conn.poll(posts.cursor)  # the post's comments: then 101's replies
            assert json.loads(share.cursor or "")["sweep"]["queue"][0][0] == L_101
            if error == "503":
                h.fail_next = (503, "3")
            elif error == "token":
                h.TOKEN = "expired"
            else:
                del h.comments[L_101]  # the comment was deleted since
            try:
                batches = [await conn.poll(share.cursor)]
            except (RetryableError, FatalError) as exc:
                raised = exc
                h.TOKEN = LinkedInHarness.TOKEN
                batches = []
            batches += await poll_all(conn, batches[-1].cursor if batches else share.cursor)
        finally:
            await conn.close()
            await h.stop()
        return raised, batches

    raised, batches = run(go)
    read = ids(batches)
    reply = L_COMMENT.format("01", "00102")
    if error == "503":
        assert isinstance(raised, RetryableError) and raised.after == pytest.approx(3.0)
        assert read.count(reply) == 1, "read when polled again from the same cursor"
    elif error == "token":
        assert isinstance(raised, FatalError) and "re-authorize" in str(raised)
    else:
        assert raised is None and reply not in read
        assert L_COMMENT.format("02", "00201") in read, "the sweep goes on to the next post"
