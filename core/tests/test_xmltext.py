"""pannier.xmltext: the quick answers for ASCII text agree with the character classes."""

from __future__ import annotations

import re

import pytest
from pannier import xmltext

SAMPLES = ["", "MSH|^~\\&|A", "plain text", "x" * 300, "\u00e9t\u00e9", "\U0001f600 ok"]


@pytest.mark.parametrize("code", [*range(0x80), 0xE9, 0x2028, 0xD800, 0xFFFE, 0x1F600])
@pytest.mark.parametrize("ignore_cr", [False, True])
def test_needs_encoding_is_true_exactly_when_encode_changes_the_text(code, ignore_cr) -> None:
    char = chr(code)
    for text in (char, f"abc{char}def", "x" * 100 + char):
        for start in (0, 1, len(text) - 1, len(text)):
            tail = text[start:]
            changed = xmltext.encode(tail.replace("\r", "") if ignore_cr else tail)
            expected = changed != (tail.replace("\r", "") if ignore_cr else tail)
            assert xmltext.needs_encoding(text, start, ignore_cr=ignore_cr) is expected, (
                code,
                text,
                start,
            )


@pytest.mark.parametrize("code", [*range(0x80), 0xE9, 0xD800, 0xDFFF, 0xFFFE, 0xFFFF])
def test_first_unrepresentable_finds_what_xml_cannot_carry(code) -> None:
    char = chr(code)
    bad = bool(re.fullmatch("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]", char))
    for prefix in ("", "MSH|^~\\&|", "\u00e9" * 3):
        text = f"{prefix}{char}tail"
        assert xmltext.first_unrepresentable(text) == (len(prefix) if bad else None), code


def test_clean_texts_have_nothing_to_encode_or_refuse() -> None:
    for text in SAMPLES:
        assert xmltext.first_unrepresentable(text) is None
    assert not xmltext.needs_encoding("MSH|^~\\&|A", 9)
    assert xmltext.needs_encoding("MSH|^~\\&|A", 0)  # the & before offset 9
    assert xmltext.needs_encoding("\u00e9t\u00e9")  # non-ASCII: a character reference
