"""The language heuristic: clear cases decided, unclear ones left unknown."""

from __future__ import annotations

import pytest

from listener.lang import detect


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("Acme support has been ignoring my ticket for a week", "en"),
        ("does acme ship to Canada? I have been waiting for my order", "en"),
        ("Ist der Acme Support heute nicht erreichbar? Ich warte seit Stunden", "de"),
        ("Pourquoi le service client de Acme ne répond pas? Je suis très déçu", "fr"),
        ("¿Por qué no funciona la app de Acme? Es la tercera vez que pasa", "es"),
        ("Perché il supporto di Acme non risponde? Sono molto deluso", "it"),
        ("Acme のサポートに連絡したけど返事がない", "ja"),
        ("Acme 고객센터 연락이 안 돼요", "ko"),
        ("Почему поддержка Acme не отвечает уже неделю?", "ru"),
        ("Чому підтримка Acme не відповідає вже тиждень? Це жахливо", "uk"),
        ("Acme客服一直不回复我的问题", "zh"),
    ],
)
def test_detects(text: str, lang: str) -> None:
    assert detect(text) == lang


@pytest.mark.parametrize(
    "text", ["acme!!!", "Acme Anvil 3000", "🔥🔥🔥", "", "acme acme acme acme"]
)
def test_unsure_is_none(text: str) -> None:
    assert detect(text) is None
