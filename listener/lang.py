"""Language detection for posts whose source gives none: a small, dependency-free heuristic.

Two steps: a script that names one language (kana -> ja, Hangul -> ko, Thai,
Greek, Hebrew, Devanagari -> hi) or a family (Cyrillic -> ru or uk, Arabic, Han
-> zh) decides at once; Latin text is scored by its share of very frequent
function words per language. Returns ``None`` when unsure (too few words, or
no clear winner): brand matching lets posts of unknown language through, so a
wrong guess is worse than none. No model, nothing downloaded.
"""

from __future__ import annotations

import re
import unicodedata

_STOPWORDS: dict[str, frozenset[str]] = {
    lang: frozenset(words.split())
    for lang, words in {
        "en": "the and is are was to of in it you i my for on with this that not have be at "
        "but what why how do does can your me just so they we been from will no",
        "de": "der die das und ist nicht ich ein eine mit auf für den zu es sie wir mein "
        "von dem sich auch noch wie was bei hat sind warum kein",
        "fr": "le la les et est pas je un une des du de pour que qui dans ce il nous mon "
        "ma sur avec mais ne sont au vous pourquoi comment très",
        "es": "el la los las y es no que de un una por para con mi en se lo pero muy "
        "del al como qué por qué está son ya",
        "it": "il lo la gli le e è non che di un una per con mi ma sono del della come "
        "perché ho anche questo",
        "pt": "o a os as e é não que de um uma para com meu minha em mas por do da "
        "como muito está são já",
        "nl": "de het een en is niet ik van dat die in voor met mijn op maar zijn je "
        "waarom hoe ook nog",
    }.items()
}
_SCRIPTS = (
    ("HIRAGANA", "ja"),
    ("KATAKANA", "ja"),
    ("HANGUL", "ko"),
    ("THAI", "th"),
    ("GREEK", "el"),
    ("HEBREW", "he"),
    ("DEVANAGARI", "hi"),
    ("ARABIC", "ar"),
    ("CJK", "zh"),
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_UKRAINIAN = frozenset("ґєії")


def detect(text: str, *, min_words: int = 3) -> str | None:
    """An ISO 639-1 code for ``text``, or None when unsure."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return None
    counts: dict[str, int] = {}
    cyrillic = 0
    for char in letters:
        name = unicodedata.name(char, "")
        if name.startswith("CYRILLIC"):
            cyrillic += 1
            continue
        for prefix, lang in _SCRIPTS:
            if name.startswith(prefix):
                counts[lang] = counts.get(lang, 0) + 1
                break
    if counts.get("ja"):
        return "ja"  # Japanese mixes kana with Han; any kana decides
    if cyrillic > len(letters) / 2:
        return "uk" if _UKRAINIAN & set(text.lower()) else "ru"
    if counts:
        lang, n = max(counts.items(), key=lambda kv: kv[1])
        if n > len(letters) / 3:
            return lang
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) < min_words:
        return None
    scores = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    ranked = sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < 2 or top <= second or top / len(words) < 0.15:
        return None
    return best
