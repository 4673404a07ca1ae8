"""What each language's G2P would misread, rewritten before it runs (numbers, dates, times, money, units, abbreviations).

Each G2P normalises text itself: pyopenjtalk reads numbers, decimals, "50%" and "3.5kg"; Genie's Chinese
normaliser reads dates, times, percentages and metric units; Genie's English normaliser reads numbers,
money in dollars, euros and pounds, and common titles. This module fills only what they were seen to get
wrong (the tests in tests/test_normalisation.py name each case): e.g. pyopenjtalk reads "15:30" as "15 : 30"
and "$20" with a silent "$", Genie's Chinese drops "$" and splits "1,000", its English reads "1st" as
"onest" and "2024-11-30" as "two thousand twenty four-eleven to thirty", and raises on a number of 16
digits. Korean is normalised by its G2P.

Chinese also gets the characters Genie's Chinese G2P cannot read (it raises): syllabic nasals such as 嗯
(n), 呣 (m) and 噷 (hm), whose pinyin has no final, and characters that g2pM reads as such (e.g. the Japanese
kokuji 込 and 働). Each becomes a character of the same reading, as upstream GPT-SoVITS replaces 嗯 and 呣.
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: Characters Genie's Chinese G2P fails on (pinyin without a final in pypinyin or g2pM), and what to read instead.
CHINESE_SPOKEN_AS = {
    "嗯": "恩",  # n / ng
    "呣": "母",  # m
    "呒": "母",  # m
    "噷": "哼",  # hm
    "唔": "吾",  # wu (also read ng)
    "丆": "罕",
    "丷": "八",
    "乊": "一",
    "乤": "下",
    "乥": "户",
    "乧": "斗",
    "乫": "家",
    "乷": "沙",
    "乺": "所",
    "乼": "翠",
    "亪": "也",
    "亽": "及",
    "仒": "冰",
    "働": "动",
    "匁": "文",
    "卪": "节",
    "厼": "耳",
    "壭": "三",
    "峠": "卡",
    "朩": "等",
    "朰": "木",
    "畓": "多",
    "罖": "罗",
    "込": "迂",
    "鎹": "送",
    # Japanese unit characters with no pinyin: read as the units they stand for
    "兙": "十克",
    "兡": "百克",
    "嗧": "加仑",
    "瓧": "十瓦",
    "瓰": "分瓦",
    "瓱": "毫瓦",
    "瓼": "百瓦",
    "甅": "厘瓦",
    # no reading in any dictionary Genie uses (Japanese kokuji): dropped rather than failing the segment
    "桛": "",
    "烪": "",
}
_CHINESE_TABLE = str.maketrans(CHINESE_SPOKEN_AS)

_DATE = re.compile(r"(?<![\d/.-])(\d{4})([/-])(\d{1,2})\2(\d{1,2})(?![\d/.-])")
_TIME = re.compile(r"(?<![\d:.])([01]?\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?(?![\d:])")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_CURRENCY = re.compile(r"([-+−]?)([$€£¥￥₩])(\d+(?:[.,]\d+)*)")
_MINUS = re.compile(r"(?<![\w.])[-−](?=\d)")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.IGNORECASE)
#: Genie's English number words stop at the trillions (it raises IndexError from 10**15): such numbers, with
#: or without thousands separators, are read digit by digit.
_HUGE_NUMBER = re.compile(r"\d(?:,?\d){15,}")

_UNIT_WORDS = {
    "ja": {
        "GB": "ギガバイト",
        "MB": "メガバイト",
        "KB": "キロバイト",
        "TB": "テラバイト",
        "GHz": "ギガヘルツ",
        "MHz": "メガヘルツ",
        "kHz": "キロヘルツ",
        "Hz": "ヘルツ",
        "℉": "華氏度",
        "°F": "華氏度",
        "°C": "度",
        "°": "度",
    },
    "zh": {
        "GB": "吉字节",
        "MB": "兆字节",
        "KB": "千字节",
        "TB": "太字节",
        "GHz": "吉赫",
        "MHz": "兆赫",
        "kHz": "千赫",
        "Hz": "赫兹",
        "℉": "华氏度",
        "°F": "华氏度",
        "°C": "摄氏度",
        "°": "度",
        "‰": "‰",
    },
    "en": {
        "GB": " gigabytes",
        "MB": " megabytes",
        "KB": " kilobytes",
        "TB": " terabytes",
        "GHz": " gigahertz",
        "MHz": " megahertz",
        "kHz": " kilohertz",
        "Hz": " hertz",
        "℃": " degrees Celsius",
        "°C": " degrees Celsius",
        "℉": " degrees Fahrenheit",
        "°F": " degrees Fahrenheit",
        "°": " degrees",
    },
}
_UNIT = re.compile(r"(?<=\d)\s?(GB|MB|KB|TB|GHz|MHz|kHz|Hz|℃|°C|℉|°F|°)(?![A-Za-z])")

_CURRENCY_WORDS = {
    "ja": {"$": "ドル", "€": "ユーロ", "£": "ポンド", "¥": "円", "￥": "円", "₩": "ウォン"},
    "zh": {"$": "美元", "€": "欧元", "£": "英镑", "¥": "元", "￥": "元", "₩": "韩元"},
    "en": {"¥": " yen", "￥": " yen", "₩": " won"},  # Genie reads $, € and £ itself
}
_MINUS_WORD = {"ja": "マイナス", "zh": "负", "en": "minus "}

_ENGLISH_ABBREVIATIONS = {
    re.compile(r"\betc\."): "et cetera",
    re.compile(r"\bvs\.?(?=\s)"): "versus",
    re.compile(r"\bNo\.(?=\s*\d)"): "number",
    re.compile(r"\bapprox\."): "approximately",
}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip
_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_WORDS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}  # fmt: skip


def english_number(value: int) -> str:
    """A whole number in English words ('one hundred twenty three'), up to the trillions."""
    if value < 20:
        return _ONES[value]
    if value < 100:
        return _TENS[value // 10] + ("" if value % 10 == 0 else " " + _ONES[value % 10])
    if value < 1000:
        rest = value % 100
        return _ONES[value // 100] + " hundred" + ("" if rest == 0 else " " + english_number(rest))
    for size, name in ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if value >= size:
            rest = value % size
            return english_number(value // size) + " " + name + ("" if rest == 0 else " " + english_number(rest))
    raise AssertionError(value)


def english_ordinal(value: int) -> str:
    words = english_number(value).split(" ")
    last = words[-1]
    if last in _ORDINAL_WORDS:
        words[-1] = _ORDINAL_WORDS[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def _valid_date(month: str, day: str) -> bool:
    return 1 <= int(month) <= 12 and 1 <= int(day) <= 31


def _date(language: str) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        year, _, month, day = match.groups()
        if not _valid_date(month, day):
            return match.group()
        if language == "en":
            return f"{_MONTHS[int(month) - 1]} {int(day)}, {year}"
        return f"{year}年{int(month)}月{int(day)}日"

    return replace


def _japanese_time(match: re.Match[str]) -> str:
    hours, minutes, seconds = match.groups()
    spoken = f"{int(hours)}時"
    if int(minutes) or seconds:
        spoken += f"{int(minutes)}分"
    if seconds and int(seconds):
        spoken += f"{int(seconds)}秒"
    return spoken


def _currency(language: str) -> Callable[[re.Match[str]], str]:
    words = _CURRENCY_WORDS[language]

    def replace(match: re.Match[str]) -> str:
        sign, symbol, amount = match.groups()
        if symbol not in words:
            return match.group()
        return f"{sign}{amount}{words[symbol]}"

    return replace


def _units(language: str) -> Callable[[re.Match[str]], str]:
    words = _UNIT_WORDS[language]
    return lambda match: words.get(match.group(1), match.group())


def normalise(text: str, language: str) -> str:
    """`text` as the G2P of `language` ('ja', 'zh', 'en'; 'ko' is left to the Korean G2P) reads it best."""
    if language == "ko":
        return text
    if language == "zh":
        text = text.translate(_CHINESE_TABLE)
    text = _DATE.sub(_date(language), text) if language != "zh" else text  # Genie's Chinese reads dates itself
    if language == "ja":
        text = _TIME.sub(_japanese_time, text)
    if language == "zh":
        text = _THOUSANDS.sub("", text)
    text = _CURRENCY.sub(_currency(language), text)
    text = _UNIT.sub(_units(language), text)
    if language == "ja":
        text = _MINUS.sub(_MINUS_WORD[language], text)  # Genie's Chinese and English read a leading minus
    if language == "en":
        text = _HUGE_NUMBER.sub(lambda match: " ".join(char for char in match.group() if char.isdigit()), text)
        text = _ORDINAL.sub(lambda match: english_ordinal(int(match.group(1))), text)
        for pattern, words in _ENGLISH_ABBREVIATIONS.items():
            text = pattern.sub(words, text)
    return text
