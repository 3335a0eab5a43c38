"""Cutting text at grapheme boundaries (chatbot_site.text)."""

from __future__ import annotations

import pytest

from chatbot_site.text import MAX_WALK, clip, grapheme_cut

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # 👨‍👩‍👧‍👦
JAPAN = "\U0001f1ef\U0001f1f5"  # 🇯🇵
WAVE_DARK = "\U0001f44b\U0001f3ff"  # 👋🏿
HEART = "\u2764\ufe0f"  # ❤️
SCOTLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
THAI = "\u0e1b\u0e47\u0e19"  # ป็น: a consonant, a mark, a consonant
HINDI = "\u0915\u093f"  # कि: a consonant and its (spacing) vowel sign
ARABIC = "\u0643\u064e\u062a\u064e\u0628\u064e"  # كَتَبَ with its vowel marks
DECOMPOSED = "e\u0301"  # é as e + COMBINING ACUTE ACCENT
THAI_AM = "\u0e19\u0e33"  # นำ: SARA AM is filed as a letter, but belongs to the one before


@pytest.mark.parametrize(
    ("cluster", "name"),
    [
        (FAMILY, "emoji ZWJ sequence"),
        (JAPAN, "flag"),
        (WAVE_DARK, "skin-tone modifier"),
        (HEART, "variation selector"),
        (SCOTLAND, "tag sequence"),
        (THAI[:2], "Thai mark"),
        (HINDI, "Devanagari vowel sign"),
        (ARABIC[:2], "Arabic vowel mark"),
        (DECOMPOSED, "decomposed accent"),
        (THAI_AM, "Thai SARA AM"),
        ("\r\n", "CR LF"),
    ],
)
def test_no_cut_inside_a_cluster(cluster, name):
    text = "ab" + cluster + "cd"
    for n in range(3, 2 + len(cluster)):
        assert grapheme_cut(text, n) == 2, (name, n)
        assert clip(text, n) == "ab"
    assert grapheme_cut(text, 2 + len(cluster)) == 2 + len(cluster)


def test_flags_are_cut_between_pairs_counted_from_the_first_indicator():
    text = "Fans:" + JAPAN * 200
    for n in range(6, 300):
        cut = grapheme_cut(text, n)
        assert cut in (n, n - 1) and (cut - 5) % 2 == 0
    assert clip(text, 300).endswith(JAPAN)


def test_boundaries_and_the_ends_are_kept_as_asked():
    assert grapheme_cut("hello world", 5) == 5
    assert grapheme_cut("hello", 0) == 0
    assert grapheme_cut("hello", 99) == 5
    assert clip(THAI * 3, 3) == clip(THAI * 3, 4) == THAI  # ป็น|ป็น, not ป็นป|็น


def test_a_cluster_longer_than_the_walk_or_at_the_start_is_cut_where_asked():
    marks = "a" + "\u0301" * (MAX_WALK + 10)
    assert grapheme_cut("xyz" + marks, MAX_WALK + 8) == MAX_WALK + 8
    assert grapheme_cut(FAMILY + "tail", 3) == 3  # never 0: a caller must make progress
