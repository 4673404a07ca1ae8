"""engine/text/normalisation.py: what each language's G2P misreads, rewritten first.

Japanese is checked on pyopenjtalk's own phonemes (it needs no GenieData): the rewritten text must read as the
words a Japanese speaker says. Chinese and English are checked on the text here (Genie's G2P needs GenieData:
tests/test_languages_e2e.py reads them through it); the Chinese characters Genie's G2P fails on are found from
the dictionaries it reads (pypinyin and g2pM), so a character missing from the table fails the test.
"""

from __future__ import annotations

import os
import pickle
import re

import pyopenjtalk
import pytest
from pypinyin import Style, lazy_pinyin

from engine.text.normalisation import CHINESE_SPOKEN_AS, english_number, english_ordinal, normalise


def japanese(text: str) -> str:
    return pyopenjtalk.g2p(text)


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("15:30に会う", "十五時三十分に会う"),
        ("10:05:30", "10時5分30秒"),  # kanji "五分" would read "gobu"
        ("9:00", "九時"),
        ("$20です", "二十ドルです"),
        ("€5", "五ユーロ"),
        ("¥500", "五百円"),
        ("2024/11/30", "二千二十四年十一月三十日"),
        ("2024-11-30", "二千二十四年十一月三十日"),
        ("-5度", "マイナス五度"),
        ("5GB", "五ギガバイト"),
    ],
)
def test_japanese_gaps_read_as_words(written: str, spoken: str) -> None:
    assert japanese(written) != japanese(spoken)  # pyopenjtalk alone misreads it: the case is a real gap
    assert japanese(normalise(written, "ja")) == japanese(spoken)


@pytest.mark.parametrize("text", ["50%", "3.5kg", "10km", "25℃", "3.14", "第3章", "2024年11月30日", "GPT-4o", "1/2", "1,000円"])
def test_japanese_pyopenjtalk_reads_itself_is_left_alone(text: str) -> None:
    assert normalise(text, "ja") == text


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("花了$20", "花了20美元"),
        ("€5", "5欧元"),
        ("¥500", "500元"),
        ("1,000元", "1000元"),
        ("5GB", "5吉字节"),
        ("嗯，好的", "恩，好的"),
        ("增长了100%", "增长了100%"),  # Genie's normaliser reads it
        ("2024/11/30", "2024/11/30"),  # likewise
        ("15:30", "15:30"),
    ],
)
def test_chinese(written: str, spoken: str) -> None:
    assert normalise(written, "zh") == spoken


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("on 2024-11-30", "on November 30, 2024"),
        ("2024/1/5", "January 5, 2024"),
        ("the 1st and the 21st", "the first and the twenty first"),
        ("the 3rd, 12th and 100th", "the third, twelfth and one hundredth"),
        ("25℃", "25 degrees Celsius"),
        ("¥500", "500 yen"),
        ("5GB", "5 gigabytes"),
        ("apples, pears etc.", "apples, pears et cetera"),
        ("cats vs. dogs", "cats versus dogs"),
        ("No. 5", "number 5"),
        ("$20 and 50%", "$20 and 50%"),  # Genie's normaliser reads these
        ("2024/13/40", "2024/13/40"),  # not a date
        ("1234567890123456", "1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6"),  # past Genie's trillions: digit by digit
        ("2,113,147,776,811,747", "2 1 1 3 1 4 7 7 7 6 8 1 1 7 4 7"),
        ("211,314,777,681,174", "211,314,777,681,174"),  # 15 digits: Genie's words
    ],
)
def test_english(written: str, spoken: str) -> None:
    assert normalise(written, "en") == spoken


def test_english_numbers() -> None:
    assert english_number(0) == "zero"
    assert english_number(1_234_567) == "one million two hundred thirty four thousand five hundred sixty seven"
    assert [english_ordinal(n) for n in (1, 2, 3, 5, 9, 12, 20, 40, 101)] == [
        "first", "second", "third", "fifth", "ninth", "twelfth", "twentieth", "fortieth", "one hundred first",
    ]  # fmt: skip


def test_korean_is_left_to_its_g2p() -> None:
    assert normalise("15:30 $20 嗯", "ko") == "15:30 $20 嗯"


def _finals_less_in_g2pm() -> set[str]:
    import g2pM

    with open(os.path.join(os.path.dirname(g2pM.__file__), "digest_cedict.pkl"), "rb") as file:
        readings = pickle.load(file)
    return {
        char
        for char, options in readings.items()
        if re.fullmatch("[\u4e00-\u9fa5]", char) and any(not re.search("[aeiouv]", option) for option in options)
    }


def test_no_chinese_character_left_that_genie_cannot_read() -> None:
    """Genie's Chinese G2P raises IndexError on a pinyin without a final: in its tone sandhi for a word pypinyin
    reads without one (嗯 n, 呣 m, 噷 hm and the unit kokuji it cannot read at all), and in its initial/final
    split for a character g2pM may read so (呒 m, 込 xx...). Every such character of the range Genie keeps is
    replaced; 儿 alone is left to Genie's erhua handling, which reads g2pM's 'r5' itself."""
    pypinyin_less = {chr(point) for point in range(0x4E00, 0x9FA6) if not lazy_pinyin(chr(point), style=Style.FINALS_TONE3)[0]}
    g2pm_less = _finals_less_in_g2pm() - {"儿"}
    assert {"嗯", "呣", "噷"} <= pypinyin_less and {"呒", "込"} <= g2pm_less  # the scan finds the known cases
    unreadable = pypinyin_less | g2pm_less
    assert unreadable <= set(CHINESE_SPOKEN_AS)
    for char in unreadable:
        for spoken in normalise(char, "zh"):
            assert lazy_pinyin(spoken, style=Style.FINALS_TONE3)[0], (char, spoken)
            assert spoken not in g2pm_less, (char, spoken)
