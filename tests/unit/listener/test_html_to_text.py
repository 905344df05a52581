"""The connectors' HTML-to-text: what a person wrote, never markup or code."""

from __future__ import annotations

from listener.connectors.base import html_to_text


def test_paragraphs_become_lines_and_links_are_collected() -> None:
    text, links = html_to_text(
        '<p>Is <b>Acme</b> down?</p><p>see <a href="https://s.example/1">this</a></p>'
    )
    assert text == "Is Acme down?\nsee this"
    assert links == ["https://s.example/1"]


def test_script_and_style_content_is_dropped_not_kept_as_text() -> None:
    html = (
        "<p>order 42 <script>alert('x')</script>never came</p>"
        "<style>p{color:red}</style><noscript><img src=x onerror=alert(1)></noscript>"
        "<template><b>hidden</b></template>done"
    )
    text, _ = html_to_text(html)
    assert text == "order 42 never camedone"
    assert "alert" not in text and "color" not in text and "hidden" not in text


def test_entities_are_decoded_once() -> None:
    text, _ = html_to_text("Tom &amp; Jerry&#39;s &lt;b&gt;")
    assert text == "Tom & Jerry's <b>"
