"""Korean written forms to Hangul words, before the pronunciation rules: digits, dates, times, money, units, Latin.

g2pk2 reads digits only before a bound noun its morphological analyser recognises (anything else digit by digit,
"1000" as 일영영영), has no decimals, times, dates or currency signs, and its English reading needs the CMU
dictionary, which we do not load. So every digit and Latin letter is turned into Hangul here, and g2pk2 then
applies its pronunciation rules to words only.
"""

from __future__ import annotations

import re
import unicodedata

_SINO_DIGITS = "영일이삼사오육칠팔구"
_SMALL_PLACES = ((1000, "천"), (100, "백"), (10, "십"))
_LARGE_PLACES = ((10**12, "조"), (10**8, "억"), (10**4, "만"))
_NATIVE_ONES = ("", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉")
_NATIVE_TENS = ("", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔")
#: Longest number read as a quantity; longer digit strings (codes, serial numbers) are read digit by digit.
_MAX_QUANTITY_DIGITS = 16

#: Counters that take native numerals (세 개, 열 명, 두 시 ...). Words that start like one of them but take
#: Sino-Korean numerals (삼 개월, 오 달러, 이 번지) are listed in `_SINO_LOOKALIKES` and matched first.
_NATIVE_COUNTERS = (
    "개 명 마리 살 시 시간 번 사람 잔 병 권 장 채 벌 켤레 그루 송이 가지 군데 곳 달 줄 통 척 쌍 그릇 자루 포기 방울"
).split()
_SINO_LOOKALIKES = "개월 개국 개년 달러 번지 시즌 장관".split()
_COUNTER = "|".join(sorted(_NATIVE_COUNTERS + _SINO_LOOKALIKES, key=len, reverse=True))

_CURRENCY_SIGNS = {"$": "달러", "€": "유로", "£": "파운드", "¥": "엔", "₩": "원"}
_UNITS = {
    "km": "킬로미터",
    "cm": "센티미터",
    "mm": "밀리미터",
    "m": "미터",
    "kg": "킬로그램",
    "mg": "밀리그램",
    "g": "그램",
    "ml": "밀리리터",
    "mL": "밀리리터",
    "L": "리터",
    "TB": "테라바이트",
    "GB": "기가바이트",
    "MB": "메가바이트",
    "KB": "킬로바이트",
    "kB": "킬로바이트",
    "GHz": "기가헤르츠",
    "MHz": "메가헤르츠",
    "Hz": "헤르츠",
    "°C": "도",
    "℃": "도",
}
_LETTER_NAMES = dict(
    zip(
        "abcdefghijklmnopqrstuvwxyz",
        "에이 비 씨 디 이 에프 지 에이치 아이 제이 케이 엘 엠 엔 오 피 큐 알 에스 티 유 브이 더블유 엑스 와이 제트".split(),
        strict=True,
    )
)

_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0xFFE6: "₩"}  # ！..～ to !..~, ￦ to ₩
_GROUPED_NUMBER = re.compile(r"(?<![\d,])\d{1,3}(?:,\d{3})+(?![\d,])")
_DATE = re.compile(r"(?<![\d.])(\d{4})([-./])(\d{1,2})\2(\d{1,2})(?![\d.])")
_TIME = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?::(\d{2}))?(?![\d:])")
_PHONE = re.compile(r"(?<!\d)(0\d{1,2})-(\d{3,4})-(\d{4})(?!\d)")
_CURRENCY = re.compile(r"([$€£¥₩]) ?(\d+(?:\.\d+)?)")
_UNIT = re.compile(r"(\d) ?(" + "|".join(sorted(map(re.escape, _UNITS), key=len, reverse=True)) + r")(?![A-Za-z])")
_NEGATIVE = re.compile(r"(?<![\w.])-(?=\d)")
_DECIMAL = re.compile(r"(\d+)\.(\d+)")
_COUNTED = re.compile(r"(제)?(\d+) ?(" + _COUNTER + ")")
_MONTH = re.compile(r"(\d+)월")
_DIGITS = re.compile(r"\d+")
_LATIN = re.compile(r"[A-Za-z]+")


def normalise(text: str) -> str:
    """`text` with every digit, sign and Latin letter written as Hangul words, in the order each rule needs."""
    text = _fold_width(text)
    text = _GROUPED_NUMBER.sub(lambda m: m.group(0).replace(",", ""), text)
    text = _DATE.sub(_date, text)
    text = _TIME.sub(_time, text)
    text = _PHONE.sub(lambda m: " ".join(digit_by_digit(group) for group in m.groups()).replace(" ", "-"), text)
    text = _CURRENCY.sub(lambda m: m.group(2) + _CURRENCY_SIGNS[m.group(1)], text)
    text = _UNIT.sub(lambda m: m.group(1) + _UNITS[m.group(2)], text)
    text = text.replace("%", "퍼센트")
    text = _NEGATIVE.sub("마이너스 ", text)
    text = _DECIMAL.sub(lambda m: sino_korean(m.group(1)) + "점" + digit_by_digit(m.group(2)), text)
    text = _MONTH.sub(_month, text)
    text = _COUNTED.sub(_counted, text)
    text = _DIGITS.sub(lambda m: sino_korean(m.group(0)), text)
    return _LATIN.sub(lambda m: "".join(_LETTER_NAMES[letter] for letter in m.group(0).lower()), text)


def _fold_width(text: str) -> str:
    """NFC (decomposed Hangul composed), full-width ASCII folded, Latin accents dropped (é -> e)."""
    text = unicodedata.normalize("NFC", text).translate(_FULL_WIDTH)
    return "".join(_strip_accent(char) if ord(char) > 0x7F and char.isalpha() else char for char in text)


def _strip_accent(char: str) -> str:
    base = "".join(part for part in unicodedata.normalize("NFKD", char) if not unicodedata.combining(part))
    return base if base.isascii() and base.isalpha() else char


def sino_korean(digits: str) -> str:
    """Sino-Korean reading of a digit string (2024 -> 이천이십사); codes and very long numbers digit by digit."""
    if len(digits) > _MAX_QUANTITY_DIGITS or (len(digits) > 1 and digits.startswith("0")):
        return digit_by_digit(digits)
    number = int(digits)
    if number == 0:
        return "영"
    words = []
    for size, name in _LARGE_PLACES:
        group, number = divmod(number, size)
        if group:
            words.append(("" if group == 1 and name == "만" else _below_10000(group)) + name)
    return "".join(words) + _below_10000(number)


def _below_10000(number: int) -> str:
    words = []
    for size, name in _SMALL_PLACES:
        digit, number = divmod(number, size)
        if digit:
            words.append(("" if digit == 1 else _SINO_DIGITS[digit]) + name)
    return "".join(words) + (_SINO_DIGITS[number] if number else "")


def native_korean(digits: str) -> str:
    """A count before a native counter: the last two digits native (스무, 서른다섯), the hundreds and up Sino-Korean."""
    number = int(digits)
    if number == 0 or len(digits) > _MAX_QUANTITY_DIGITS:
        return sino_korean(digits)
    hundreds, rest = divmod(number, 100)
    tens, ones = divmod(rest, 10)
    native = "스무" if rest == 20 else _NATIVE_TENS[tens] + _NATIVE_ONES[ones]
    return (sino_korean(str(hundreds * 100)) if hundreds else "") + native


def digit_by_digit(digits: str) -> str:
    return "".join(_SINO_DIGITS[int(digit)] for digit in digits)


def _date(match: re.Match[str]) -> str:
    year, _, month, day = match.groups()
    if not (1 <= int(month) <= 12 and 1 <= int(day) <= 31):
        return match.group(0)
    return f"{year}년 {int(month)}월 {int(day)}일"


def _time(match: re.Match[str]) -> str:
    hours, minutes, seconds = match.groups()
    if int(hours) > 24 or int(minutes) > 59 or (seconds is not None and int(seconds) > 59):
        return match.group(0)
    words = [f"{int(hours)}시"]
    words += [f"{int(minutes)}분"] if int(minutes) else []
    words += [f"{int(seconds)}초"] if seconds is not None and int(seconds) else []
    return " ".join(words)


def _month(match: re.Match[str]) -> str:
    """June and October drop a consonant (유월, 시월); other months are Sino-Korean."""
    irregular = {"6": "유", "06": "유", "10": "시"}
    return irregular.get(match.group(1), sino_korean(match.group(1).lstrip("0") or "0")) + "월"


def _counted(match: re.Match[str]) -> str:
    ordinal_prefix, digits, counter = match.groups()
    if ordinal_prefix or counter in _SINO_LOOKALIKES:  # 제3장 is "chapter three": Sino-Korean
        return (ordinal_prefix or "") + sino_korean(digits) + counter
    if counter == "번" and digits == "1" and match.string.startswith("째", match.end()):
        return "첫" + counter  # 1번째: 첫 번째
    return native_korean(digits) + counter
