"""Cutting text at grapheme boundaries and splitting it at sentence ends (chatbot_site.text)."""

from __future__ import annotations

import re

import pytest

from chatbot_site.text import MAX_WALK, SENTENCE_END, clip, grapheme_cut, split_sentences

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


ENDS = re.compile(SENTENCE_END)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Inline code: its ". " and its 。 are code, not sentence ends.
        (
            "Run `echo done. ok` before you start. Then stop.",
            ["Run `echo done. ok` before you start.", "Then stop."],
        ),
        (
            '用 `print("你好。世界\uff01")` 打印问候。然后退出。',
            ['用 `print("你好。世界\uff01")` 打印问候。', "然后退出。", ""],
        ),
        # A URL keeps a 。 that more of it follows; one that text follows ends the sentence.
        (
            "见 https://ja.wikipedia.org/wiki/モーニング娘。/history 的说明。下一句。",
            ["见 https://ja.wikipedia.org/wiki/モーニング娘。/history 的说明。", "下一句。", ""],
        ),
        (
            "请访问https://example.com。然后登录。",
            ["请访问https://example.com。", "然后登录。", ""],
        ),
        ("See https://x.org/faq? Then go. `a`", ["See https://x.org/faq?", "Then go.", "`a`"]),
        # After a code span, a sentence ends as anywhere else.
        ("Run `make stop`. Then `make run`。下", ["Run `make stop`.", "Then `make run`。", "下"]),
    ],
)
def test_no_sentence_ends_inside_inline_code_or_a_url(text, expected):
    assert split_sentences(text, ENDS) == expected


def test_split_sentences_is_the_patterns_split_where_nothing_is_code_or_a_url():
    for text in ["A. B! C? D。E", "Dr. Smith came. `x` went.", "x `unclosed. y", "www.a.b c. d"]:
        assert split_sentences(text, ENDS) == ENDS.split(text)


def test_a_list_items_number_at_the_start_of_a_line_ends_no_sentence():
    """A Markdown list item is "1. **PII masking**: ..."; its "1." ended a sentence, so a chunk
    could end with a bare "1." and an answer quote one. A number elsewhere still ends one."""
    text = "1. **PII masking**: the input. Then more.\n2. Second.\n12. Twelfth. It costs 5. Done."
    assert split_sentences(text, ENDS) == [
        "1. **PII masking**: the input.",
        "Then more.",
        "2. Second.",
        "12. Twelfth.",
        "It costs 5.",
        "Done.",
    ]
