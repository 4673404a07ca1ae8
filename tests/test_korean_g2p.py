"""Korean G2P (engine/text/korean_g2p.py, engine/text/korean_normaliser.py): words whose pronunciation changes by rule.

Each expected sequence is derived by hand: the written word, the rule that changes it (in the comment), the
pronounced syllables, then each syllable split into its letters (the silent ㅇ of a vowel-initial syllable is
kept, compound vowels are two letters: ㅛ = ㅣㅗ, ㅘ = ㅗㅏ, ㅝ = ㅜㅓ, ㅠ = ㅣㅜ, ㅕ = ㅣㅓ, ㅢ = ㅡㅣ), spaces as 空,
and a closing '.' after a final letter. Every symbol is one character, so a sequence is written as a string.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from engine.genie import package_data_dir
from engine.text.korean_g2p import JAMO, PUNCTUATION, SYMBOLS, korean_to_symbols
from engine.text.korean_normaliser import native_korean, normalise, sino_korean
from tests.helpers import OUTPUT
from tests.server_process import ROOT


def genie_symbols_v2() -> list[str]:
    """Genie's `symbols_v2`, read from its file alone: importing `genie_tts` would need GenieData."""
    path = package_data_dir().parent / "G2P" / "SymbolsV2.py"
    spec = importlib.util.spec_from_file_location("genie_symbols_v2", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.symbols_v2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # liaison (연음): a coda moves to the next syllable's empty onset. 음악 -> 으막
        ("음악", "ㅇㅡㅁㅏㄱ."),
        # liaison: 옷이 -> 오시
        ("옷이", "ㅇㅗㅅㅣ."),
        # liaison of an aspirated coda: 꽃을 -> 꼬츨
        ("꽃을", "ㄲㅗㅊㅡㄹ."),
        # nasalisation (비음화): ㄱ before ㅁ becomes ㅇ. 국물 -> 궁물
        ("국물", "ㄱㅜㅇㅁㅜㄹ."),
        # nasalisation: ㅂ before ㄴ becomes ㅁ. 합니다 -> 함니다
        ("합니다", "ㅎㅏㅁㄴㅣㄷㅏ."),
        # tensification (경음화): ㄱ after the obstruent coda ㄱ is tense. 학교 -> 학꾜 (ㅛ = ㅣㅗ)
        ("학교", "ㅎㅏㄱㄲㅣㅗ."),
        # tensification: ㅂ after ㄱ. 국밥 -> 국빱
        ("국밥", "ㄱㅜㄱㅃㅏㅂ."),
        # aspiration (격음화): ㅎ + ㄷ -> ㅌ. 좋다 -> 조타
        ("좋다", "ㅈㅗㅌㅏ."),
        # aspiration: ㄱ + ㅎ -> ㅋ. 축하 -> 추카
        ("축하", "ㅊㅜㅋㅏ."),
        # lateralisation (유음화): ㄴ before ㄹ becomes ㄹ. 신라 -> 실라
        ("신라", "ㅅㅣㄹㄹㅏ."),
        # lateralisation: ㄴ after ㄹ becomes ㄹ. 칼날 -> 칼랄
        ("칼날", "ㅋㅏㄹㄹㅏㄹ."),
        # palatalisation (구개음화): ㅌ before 이 becomes ㅊ. 같이 -> 가치
        ("같이", "ㄱㅏㅊㅣ."),
        # palatalisation: ㄷ before 이 becomes ㅈ. 굳이 -> 구지
        ("굳이", "ㄱㅜㅈㅣ."),
        # coda cluster simplification (자음군 단순화): 닭 -> 닥
        ("닭", "ㄷㅏㄱ."),
        # cluster + liaison + tensification: 값이 -> 갑씨
        ("값이", "ㄱㅏㅂㅆㅣ."),
        # ㅎ dropped before a vowel (ㅎ 탈락): 좋아 -> 조아
        ("좋아", "ㅈㅗㅇㅏ."),
        # compound vowels are two letters: 과 = ㄱ ㅗㅏ, 의 (word-initial, kept) = ㅇ ㅡㅣ
        ("과자", "ㄱㅗㅏㅈㅏ."),
        ("의사", "ㅇㅡㅣㅅㅏ."),
        # no lateralisation across a space (the fix-up; GPT-SoVITS repairs it after 을/를): 책을 넘기다 -> 채글 넘기다
        ("책을 넘기다", "ㅊㅐㄱㅡㄹ空ㄴㅓㅁㄱㅣㄷㅏ."),
        # the same after any word ending in ㄹ: 서울 남산 stays 서울 남산
        ("서울 남산", "ㅅㅓㅇㅜㄹ空ㄴㅏㅁㅅㅏㄴ."),
    ],
)
def test_pronunciation_rules(text: str, expected: str) -> None:
    assert korean_to_symbols(text) == list(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a native numeral before the counter 개: 사과 3개 -> 사과 세개
        ("사과 3개", "ㅅㅏㄱㅗㅏ空ㅅㅔㄱㅐ."),
        # 20 before a counter is 스무: 20살 -> 스무살
        ("20살", "ㅅㅡㅁㅜㅅㅏㄹ."),
        # a bare number is Sino-Korean: 1000 -> 천
        ("1000", "ㅊㅓㄴ."),
        # Sino-Korean year, then liaison (천이 -> 처니) and tensification (십사 -> 십싸): 이처니십싸년
        ("2024년", "ㅇㅣㅊㅓㄴㅣㅅㅣㅂㅆㅏㄴㅣㅓㄴ."),
        # a decimal: 3.5 -> 삼점오, with liaison -> 삼저모
        ("3.5", "ㅅㅏㅁㅈㅓㅁㅗ."),
        # a time: 3:30 -> 세시 삼십분, 분 tense after ㅂ -> 세시 삼십뿐
        ("3:30", "ㅅㅔㅅㅣ空ㅅㅏㅁㅅㅣㅂㅃㅜㄴ."),
        # a percentage: 50% -> 오십퍼센트
        ("50%", "ㅇㅗㅅㅣㅂㅍㅓㅅㅔㄴㅌㅡ."),
        # currency before the amount: $5 -> 오달러 (ㄹ+ㄹ unchanged)
        ("$5", "ㅇㅗㄷㅏㄹㄹㅓ."),
        # grouped digits and the won sign: ₩1,000 -> 천원, liaison -> 처눤 (ㅝ = ㅜㅓ)
        ("₩1,000", "ㅊㅓㄴㅜㅓㄴ."),
        # a date: 2000.6.10 -> 이천년 유월 십일 (June drops its ㄱ), liaison 십일 -> 시빌
        ("2000.6.10", "ㅇㅣㅊㅓㄴㄴㅣㅓㄴ空ㅇㅣㅜㅇㅜㅓㄹ空ㅅㅣㅂㅣㄹ."),
    ],
)
def test_numbers_dates_times_money(text: str, expected: str) -> None:
    assert korean_to_symbols(text) == list(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Latin letters by their Korean names: GPU -> 지피유
        ("GPU", "ㅈㅣㅍㅣㅇㅣㅜ."),
        # then the particle and the rules: GPU를 샀다 -> 지피유를 삳따 (ㅆ coda is ㄷ, ㄷ tenses the next ㄷ)
        ("GPU를 샀다", "ㅈㅣㅍㅣㅇㅣㅜㄹㅡㄹ空ㅅㅏㄷㄸㅏ."),
        # iPhone -> 아이피에이치오엔이, liaison 엔이 -> 에니
        ("iPhone", "ㅇㅏㅇㅣㅍㅣㅇㅔㅇㅣㅊㅣㅇㅗㅇㅔㄴㅣ."),
        # full-width letters are the same letters
        ("ＧＰＵ", "ㅈㅣㅍㅣㅇㅣㅜ."),
    ],
)
def test_latin_letters(text: str, expected: str) -> None:
    assert korean_to_symbols(text) == list(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # punctuation is kept, a space is 空, no '.' is added after punctuation
        ("안녕, 친구!", "ㅇㅏㄴㄴㅣㅓㅇ,空ㅊㅣㄴㄱㅜ!"),
        # full-width and CJK punctuation are read as their ASCII symbol; a run of dots is an ellipsis
        ("네？", "ㄴㅔ?"),
        ("네。", "ㄴㅔ."),
        ("네...", "ㄴㅔ…"),
        # runs of spaces, tabs and line breaks are one space; ends are trimmed
        ("  네 \t\n 네  ", "ㄴㅔ空ㄴㅔ."),
        # anything unknown (a run of emoji) is one pause 停; ㅎ dropped before a vowel: 좋아 -> 조아
        ("좋아 😀👍 좋아", "ㅈㅗㅇㅏ空停空ㅈㅗㅇㅏ."),
        # a control character or a lone surrogate is a pause too, never handed to mecab
        ("가\x00나\udc80", "ㄱㅏ停ㄴㅏ停"),
    ],
)
def test_punctuation_and_spaces(text: str, expected: str) -> None:
    assert korean_to_symbols(text) == list(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", ""), ("   \n\t ", ""), ("😀", ""), ("👨\u200d👩\u200d👧", ""), ("漢字", ""), ("😀!", "!"), ("...?", "…?")],
)
def test_nothing_to_say(text: str, expected: str) -> None:
    """No letter: no crash, and at most the punctuation (no '空' or '停' the caller could take for speech)."""
    assert korean_to_symbols(text) == list(expected)


def test_decomposed_hangul_reads_as_composed() -> None:
    assert korean_to_symbols(unicodedata.normalize("NFD", "음악 같이")) == korean_to_symbols("음악 같이")


@pytest.mark.parametrize(
    ("digits", "expected"),
    [("0", "영"), ("10", "십"), ("1010", "천십"), ("10000", "만"), ("110000", "십일만"), ("100000000", "일억"),
     ("123456789", "일억이천삼백사십오만육천칠백팔십구"), ("010", "영일영")],
)  # fmt: skip
def test_sino_korean_numbers(digits: str, expected: str) -> None:
    assert sino_korean(digits) == expected


@pytest.mark.parametrize(
    ("digits", "expected"), [("1", "한"), ("4", "네"), ("20", "스무"), ("21", "스물한"), ("99", "아흔아홉"), ("120", "백스무")]
)
def test_native_korean_numbers(digits: str, expected: str) -> None:
    assert native_korean(digits) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3개월", "삼개월"),  # 개월 takes Sino-Korean numerals although it starts like 개
        ("3시간 10분", "세시간 십분"),  # hours native, minutes Sino-Korean
        ("10명", "열명"),
        ("1번째", "첫번째"),
        ("제3장", "제삼장"),  # an ordinal with 제 is Sino-Korean
        ("10월", "시월"),
        ("12:05:30", "열두시 오분 삼십초"),
        ("24:61", "이십사:육십일"),  # not a time: numbers
        ("2024-03-05", "이천이십사년 삼월 오일"),
        ("010-1234-5678", "영일영-일이삼사-오육칠팔"),  # a phone number digit by digit
        ("-3도", "마이너스 삼도"),
        ("3-4", "삼-사"),  # a range, not a sign
        ("100km", "백킬로미터"),
        ("2.5kg", "이점오킬로그램"),
        ("€20", "이십유로"),
        ("1,000,000원", "백만원"),
        ("café", "씨에이에프이"),
        ("12345678901234567", "일이삼사오육칠팔구영일이삼사오육칠"),  # too long for a quantity
    ],
)
def test_normaliser(text: str, expected: str) -> None:
    assert normalise(text) == expected


def test_symbols_are_genie_symbols() -> None:
    table = genie_symbols_v2()
    assert SYMBOLS <= set(table)
    assert set("ㄱㄴㄷㄹㅁㅂㅅㅇㅈㅊㅋㅌㅍㅎㄲㄸㅃㅆㅉㅏㅓㅗㅜㅡㅣㅐㅔ空停") <= SYMBOLS


def test_threads_get_the_same_answers() -> None:
    texts = ["음악을 들으며 국물을 먹었다.", "2024년 3월 5일 오후 3:30", "GPU 50% 사용 중!", "신라의 같이 학교"]
    expected = [korean_to_symbols(text) for text in texts]
    results: list[list[list[str]]] = []

    def work() -> None:
        results.append([korean_to_symbols(text) for text in texts * 5])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected * 5] * 4


def test_loads_lazily_and_never_downloads() -> None:
    """In a fresh interpreter: importing loads no G2P library, and the first call opens no socket and never
    reaches `nltk.download` (g2pk2's import calls it when the CMU dictionary is absent)."""
    script = """
import socket, sys
def refuse(*args, **kwargs):
    raise AssertionError("network access")
socket.socket.connect = refuse
socket.create_connection = refuse
import nltk
nltk.download = refuse
import engine.text.korean_g2p as korean
assert not {"g2pk2", "mecab", "jamo"} & set(sys.modules), sorted(sys.modules)
print("".join(korean.korean_to_symbols("국물")))
assert {"g2pk2", "mecab"} <= set(sys.modules)
assert nltk.download is refuse
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ㄱㅜㅇㅁㅜㄹ."


FUZZ = {
    "deadline": None,
    "database": DirectoryBasedExampleDatabase(str(OUTPUT / "hypothesis")),
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow],
}
#: Text like a Korean answer: syllables, letters, digits, Latin, signs, punctuation and spaces.
KOREANISH = st.text(
    st.one_of(
        st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),
        st.characters(min_codepoint=0x3131, max_codepoint=0x318E),
        st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),
        st.sampled_from(list("0123456789.,:;-%$€₩ ?!…。、·\n\tAaZz'\"()~😀")),
    ),
    max_size=60,
)


@settings(max_examples=300, **FUZZ)
@given(st.one_of(st.text(max_size=60), KOREANISH))
def test_any_text_gives_genie_symbols(text: str) -> None:
    """Never raises; only symbols of Genie's table (test_symbols_are_genie_symbols); letters end with a '.';
    no letter means punctuation only."""
    symbols = korean_to_symbols(text)
    assert set(symbols) <= SYMBOLS
    if any(symbol in JAMO for symbol in symbols):
        assert symbols[-1] not in JAMO
    else:
        assert set(symbols) <= PUNCTUATION


def test_long_text_is_read() -> None:
    text = "오늘은 날씨가 좋아서 공원에 갔습니다. " * 40
    symbols = korean_to_symbols(text)
    assert symbols.count("空") == 40 * 5 - 1  # four spaces in each sentence, one between sentences
    assert symbols.count(".") == 40


def test_a_missing_library_is_named() -> None:
    """Without mecab-ko the first call says what to install (g2pk2 itself would try `pip install` at run time)."""
    script = """
import sys
sys.modules["mecab"] = None  # what an environment without python-mecab-ko looks like to an import
import engine.text.korean_g2p as korean
try:
    korean.korean_to_symbols("국물")
except RuntimeError as error:
    print(error)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Korean G2P needs mecab: pip install -r requirements.txt"
