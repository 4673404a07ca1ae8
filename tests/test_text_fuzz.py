"""Hostile text never crashes a request: property tests (Hypothesis) and the nastiest inputs end to end.

Three layers, fed the same families of hostile text (any code point including lone surrogates, emoji
sequences, right-to-left text with bidi controls and combining marks, control and format characters,
4096 characters without punctuation, punctuation only, digits and URLs, mixed Chinese/Japanese/English,
and concatenations of these):

1. `engine.text.segmenter.segment`: never raises or hangs, loses no character but whitespace, and keeps
   every segment within its budget (see `check_segments` for the exact invariants).
2. `engine.synthesis.speech.plan_speech` on the real demo voice in this process, with real G2P (pyopenjtalk; the
   voice is Japanese): a `SpeechPlan` (carrying every segment's phonemes, what `speak` decodes),
   `NothingToSay` or `UnreadableText` and nothing else.
3. A real server: each of the nastiest inputs gets a 200 whose WAV decodes and whose stream ends
   cleanly, or a 400 whose message says why; never a 5xx, a traceback in the log or a broken stream.

How many inputs each fuzzer tried is printed at the end and appended as one JSON line to
tests/output/fuzz-figures.json.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import anyio
import httpx
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from engine.text.segmenter import CLAUSE_END, CLOSERS, MIN_SEGMENT_UNITS, SENTENCE_END, segment, units
from tests.helpers import OUTPUT, SPEECH
from tests.server_process import ServerProcess

#: Failing examples are replayed first on the next run; kept out of the repository (tests/output is ignored).
DATABASE = DirectoryBasedExampleDatabase(str(OUTPUT / "hypothesis"))
#: Hypothesis examples per family of hostile text (9 families), sized so the module runs in about a minute
#: and a half here, server start included.
SEGMENTER_EXAMPLES = 170
PLAN_EXAMPLES = 28
OTHER_LANGUAGE_EXAMPLES = 60
#: The server's defaults (FIRST_SEGMENT_CHARS, SEGMENT_CHARS), which plan_speech is given here too.
FIRST_BUDGET, BUDGET = 24, 120
LONG = 4096  # MAX_INPUT_CHARS' default: the longest text a request may carry

FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module", autouse=True)
def fuzz_figures(request: pytest.FixtureRequest):
    """After the module: print how many inputs each fuzzer tried, and the module's wall time (server start
    included when this module starts it), and append them to fuzz-figures.json."""
    started = time.perf_counter()
    yield
    if not FIGURES:
        return
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.perf_counter() - started, 1), **FIGURES}
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with (OUTPUT / "fuzz-figures.json").open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        print(f"\nfuzz figures: {json.dumps(record, ensure_ascii=False)}")


# ---- hostile text ---------------------------------------------------------------------------------

EMOJI = [
    "😀",
    "🎉",
    "👨‍👩‍👧‍👦",
    "🇯🇵",
    "👍🏽",
    "❤️",
    "🏳️‍🌈",
    "1️⃣",
    "#️⃣",
    "🫠",
    "🧑‍💻",
    "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",
]
RTL = [
    "שָׁלוֹם",
    "עולם",
    "مَرْحَبًا",
    "بِالْعَالَمِ",
    "، ",
    "\u202e",
    "\u202b",
    "\u202c",
    "\u200f",
    "\u200e",
    "\u2067",
    "\u2069",
    "\u061c",
]
WORDS = [
    "こんにちは",
    "今日は",
    "いい天気",
    "ですね",
    "カタカナ",
    "ｶﾀｶﾅ",
    "漢字",
    "々",
    "ー",
    "你好",
    "世界",
    "我们去公园",
    "天气很好",
    "hello",
    "world",
    "Mr",
    "GPT-SoVITS",
    "OpenAI",
    "Ｔｏｋｙｏ",
    "１２３",
    "3.14",
    "e.g.",
    "...",
]
SEPARATORS = [
    " ",
    "",
    "、",
    "。",
    "，",
    ",",
    ".",
    "!",
    "？",
    "…",
    "\n",
    "\r\n",
    "\r",
    "「",
    "」",
    "—",
    "\u3000",
    "\t",
    ". ",
    "\u2028",
]
PUNCTUATION = SENTENCE_END + CLAUSE_END + CLOSERS + ".・〜~-()[]{}<>«»¿¡‽「『（【《〈"

ANY_CHARACTER = st.characters(exclude_categories=())  # every code point, lone surrogates included
URL = r"https?://[a-z0-9-]{1,12}(\.[a-z]{2,5}){1,2}(:[0-9]{2,5})?(/[A-Za-z0-9._~%-]{0,10}){0,3}(\?[a-z]{1,5}=[A-Za-z0-9%]{0,6}(&[a-z]{1,5}=[0-9]{0,4})?)?(#[a-z]{0,5})?"
NUMBER = r"[-+]?[0-9]{1,40}([.,][0-9]{1,12}){0,3}(%|e[-+]?[0-9]{1,3})?"
OTHER_DIGITS = (
    r"[0-9]{4}[-/][0-9]{2}[-/][0-9]{2}|[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?|\+[0-9]{2}-[0-9]-[0-9]{4}-[0-9]{4}"
    r"|[a-z]{1,8}@[a-z]{1,8}\.com|([0-9]{1,3}\.){3}[0-9]{1,3}|v[0-9]\.[0-9]{1,2}\.[0-9]"
)


def _repeat_to(length: int):
    return lambda unit: (unit * (length // len(unit) + 1))[:length]


FAMILIES: dict[str, st.SearchStrategy[str]] = {
    "any_code_point": st.text(ANY_CHARACTER, max_size=300),
    "emoji": st.lists(st.sampled_from(EMOJI), min_size=1, max_size=40).map("".join),
    "rtl_combining": st.lists(st.sampled_from(RTL) | st.characters(categories=["Mn", "Mc", "Me"]), min_size=1, max_size=60).map(
        "".join
    ),
    "control_format": st.text(
        st.characters(categories=["Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"]), min_size=1, max_size=80
    ),
    "long_unpunctuated": st.text(st.characters(categories=["L", "Nd", "Mn", "So"]) | st.just(" "), min_size=1, max_size=30)
    .filter(str.strip)
    .map(_repeat_to(LONG)),
    "punctuation_only": st.text(st.sampled_from(PUNCTUATION) | st.characters(categories=["P"]), min_size=1, max_size=120),
    "digits_urls": st.lists(
        st.from_regex(URL, fullmatch=True) | st.from_regex(NUMBER, fullmatch=True) | st.from_regex(OTHER_DIGITS, fullmatch=True),
        min_size=1,
        max_size=8,
    ).flatmap(lambda items: st.sampled_from([" ", "", "、", ". ", "\n"]).map(lambda sep: sep.join(items))),
    "mixed_zh_ja_en": st.lists(st.sampled_from(WORDS) | st.sampled_from(SEPARATORS), min_size=1, max_size=60).map("".join),
}
SHORT_FAMILIES = [name for name in FAMILIES if name != "long_unpunctuated"]
FAMILIES["concatenation"] = st.lists(
    st.sampled_from(SHORT_FAMILIES).flatmap(lambda name: FAMILIES[name]), min_size=2, max_size=6
).map("".join)


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(*FAMILIES.values())


def count(name: str, family: str, tried: int) -> None:
    """Add to the figures: inputs tried per fuzzer, per family."""
    per_family = FIGURES.setdefault(f"{name}_by_family", {})
    per_family[family] = per_family.get(family, 0) + tried
    FIGURES[f"{name}_inputs"] = sum(per_family.values())


# ---- 1. the segmenter -----------------------------------------------------------------------------


def non_space(text: str) -> list[str]:
    return [char for char in text if not char.isspace()]


def limits(count: int, first_budget: int, budget: int) -> list[int]:
    """The budget of each segment: `first_budget`, then doubling up to `budget` (segment() grows it per segment)."""
    out, limit = [], first_budget
    for _ in range(count):
        out.append(limit)
        limit = min(budget, limit * 2)
    return out


def check_segments(text: str, segments: list[str], first_budget: int, budget: int) -> None:
    """The exact invariants of segment(), read from the code.

    - Only whitespace (str.isspace) is dropped or added: "\\r\\n", "\\n" and runs of [ \\t\\r\\f\\v\\u3000] become one
      space, whitespace at either end of a clause or a cut is stripped, and one ASCII space is put between two parts
      joined ASCII to ASCII. So the non-whitespace characters of the segments, joined, are the text's, in order.
    - Every segment is non-empty, stripped, without "\\n" or two spaces in a row.
    - Segment i has at most limits[i] units (ASCII 1, other 2): 24, 48, 96, 120, 120... with the defaults.
      Exceptions, both by design: the last segment may have absorbed a tail shorter than MIN_SEGMENT_UNITS
      (the merged segment stays within `budget`); and a cut never splits a character, so with a budget of 1
      a 2-unit character is a segment of its own. There is no unbreakable run otherwise: a run without spaces
      is cut between characters.
    """
    assert non_space("".join(segments)) == non_space(text)
    bounds = limits(len(segments), first_budget, budget)
    for index, (piece, limit) in enumerate(zip(segments, bounds, strict=True)):
        assert piece and piece == piece.strip(), (index, piece)
        assert "\n" not in piece and "  " not in piece, (index, piece)
        within = units(piece) <= limit or (len(piece) == 1 and limit < 2)
        if index == len(segments) - 1 and not within:
            within = units(piece) <= min(budget, limit + MIN_SEGMENT_UNITS)
        assert within, f"segment {index} has {units(piece)} units, over its budget of {limit}: {piece!r}"


@st.composite
def budgets(draw: st.DrawFn) -> tuple[int, int]:
    """The server's defaults half the time, else any first budget and a budget at least as large (1 included)."""
    if draw(st.booleans()):
        return FIRST_BUDGET, BUDGET
    first = draw(st.integers(1, 200))
    return first, draw(st.integers(first, 400))


FUZZ = {
    "deadline": None,
    "database": DATABASE,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_segmenter_never_raises_loses_text_or_overflows_a_budget(family: str) -> None:
    tried = 0

    @settings(max_examples=SEGMENTER_EXAMPLES, **FUZZ)
    @given(FAMILIES[family], budgets())
    def check(text: str, budget_pair: tuple[int, int]) -> None:
        nonlocal tried
        tried += 1
        first_budget, budget = budget_pair
        check_segments(text, segment(text, first_budget, budget), first_budget, budget)

    check()
    count("segmenter", family, tried)
    assert tried >= SEGMENTER_EXAMPLES


@pytest.mark.parametrize(
    ("text", "first_budget", "budget"),
    [
        ("00,0", 2, 2),  # found by the fuzzer: the space joining two ASCII parts was not counted (fixed)
        ("Hi, abcdefghijklmnopqrstu", 24, 120),  # the same at the server's budgets: a 25-unit first segment
        ("あい", 1, 1),  # found by the fuzzer: a budget of 1 and a 2-unit character looped forever (fixed)
        ("", 24, 120),
        ("a" * LONG, 24, 120),
        ("あ" * LONG, 24, 120),
        ("\ud800\udfff" * 100, 24, 120),
        ("😀" * LONG, 24, 120),
        ("。" * LONG, 24, 120),
        ("a " * (LONG // 2), 4, 4),
    ],
    ids=[
        "join_space_tiny_budget",
        "join_space_default_budget",
        "budget_of_one",
        "empty",
        "ascii_run",
        "kana_run",
        "lone_surrogates",
        "emoji_run",
        "stops_only",
        "one_letter_words",
    ],
)
@pytest.mark.timeout(10)
def test_segmenter_on_known_hard_inputs(text: str, first_budget: int, budget: int) -> None:
    check_segments(text, segment(text, first_budget, budget), first_budget, budget)


@pytest.mark.timeout(10)
def test_segmenter_budget_of_one_terminates_with_wide_characters() -> None:
    """It used to loop forever: no character fitted a budget of 1 unit, so no cut advanced."""
    assert segment("あい", 1, 1) == ["あ", "い"]
    assert segment("aあb", 1, 1) == ["a", "あ", "b"]


def test_segmenter_counts_the_joining_space_against_the_budget() -> None:
    """ "Hi," (3 units) and a 21-unit word fit 24 units only without the space that joins them: 25 did go out."""
    word = "abcdefghijklmnopqrstu"
    assert segment(f"Hi, {word}", 24, 120) == ["Hi,", word]
    assert segment("00,0", 2, 2) == ["00", ",0"]  # a comma between digits is part of the number, not a clause end


# ---- 2. planning and G2P on the real voice, in this process ------------------------------------------


class G2PErrors(logging.Handler):
    """Counts the G2P failures `_phonemes_or_none` caught and logged (they are 400s unreadable_input, not crashes)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.caught: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " g2p_error error=" in message:
            self.caught[message.split(" error=", 1)[1].split("(", 1)[0]] += 1


def well_formed(phonemes) -> None:
    """What the T2S encoder will be fed: ids of real symbols, one BERT row per id."""
    from engine.genie import symbol_table

    sequence, bert = phonemes.sequence, phonemes.bert
    assert sequence.dtype.name == "int64" and sequence.ndim == 2 and sequence.shape[0] == 1 and sequence.shape[1] >= 1
    assert 0 <= int(sequence.min()) and int(sequence.max()) < len(symbol_table())
    assert bert.dtype.name == "float32" and bert.shape == (sequence.shape[1], 1024)
    assert len(phonemes.symbols) == sequence.shape[1] and phonemes.speakable


def release_freed_memory() -> None:
    """Hand freed heap back to the system (glibc keeps about 1.6 GB of the voice's buffers otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


@pytest.fixture(scope="class")
def demo_voice(demo_root: Path) -> Iterator[SimpleNamespace]:
    """The demo voice (as `.voice`), loaded for TestPlanningOnTheDemoVoice and released after it, before the
    server tests start a server: at most one 4 GB model of this module is alive at a time (so the scope is the
    class). The holder is what the tests' arguments keep, so the voice itself can go at teardown."""
    from engine.genie import import_genie
    from engine.voices.voice import SharedModels, load_voice
    from engine.voices.voice_folder import inspect_voice

    import_genie(demo_root / "GenieData")
    shared = SharedModels.load(demo_root / "GenieData", threads=2)
    holder = SimpleNamespace(voice=load_voice(inspect_voice(demo_root / "demo"), shared, threads=2))
    del shared
    yield holder
    holder.voice = None
    gc.collect()
    release_freed_memory()


@pytest.fixture(scope="class")
def g2p_errors():
    handler = G2PErrors()
    logger = logging.getLogger("gsv.speech")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    FIGURES["g2p_errors_caught"] = dict(handler.caught)


def plan_and_check(voice, text: str, outcomes: Counter[str]) -> None:
    """plan_speech gives a SpeechPlan, or raises NothingToSay or UnreadableText (G2P failed on a part: a 400 for
    the client), and anything else fails the test. The plan keeps every character but whitespace of the
    segments, and carries each one's phonemes (what `speak` decodes): well-formed, within the phoneme bound
    (unless one character), or None exactly when the segment has nothing to say."""
    from engine.synthesis.speech import NothingToSay, SpeechPlan, UnreadableText, _phonemes_or_none, plan_speech
    from engine.synthesis.vocoding import MAX_SEGMENT_PHONEMES

    request_id = f"fuzz-{uuid.uuid4().hex[:8]}"
    segments = segment(text, FIRST_BUDGET, BUDGET)
    try:
        plan = anyio.run(plan_speech, voice, text, FIRST_BUDGET, BUDGET, request_id)
    except NothingToSay:
        outcomes["nothing_to_say"] += 1
        for piece in segments:
            assert _phonemes_or_none(piece, voice.language, request_id) is None, piece
        return
    except UnreadableText:
        outcomes["unreadable"] += 1
        return
    outcomes["plan"] += 1
    assert isinstance(plan, SpeechPlan)
    assert "".join(plan.segments).replace(" ", "") == "".join(segments).replace(" ", "")
    assert plan.reference is voice.reference
    well_formed(plan.first_phonemes)
    for piece, phonemes in zip(plan.segments, plan.phonemes, strict=True):
        outcomes["segments"] += 1
        if phonemes is None:
            outcomes["segments_skipped"] += 1
            assert _phonemes_or_none(piece, voice.language, request_id) is None, piece
        else:
            well_formed(phonemes)
            assert phonemes.count <= MAX_SEGMENT_PHONEMES or len(piece) == 1, piece


@pytest.mark.e2e
class TestPlanningOnTheDemoVoice:
    """Real G2P (pyopenjtalk) on the real demo voice in this process."""

    @pytest.mark.parametrize("family", sorted(FAMILIES))
    def test_plan_speech_gives_a_plan_or_nothing_to_say(self, demo_voice, g2p_errors, family: str) -> None:
        voice = demo_voice.voice
        assert voice.language == "ja"
        tried = 0
        outcomes: Counter[str] = Counter()

        @settings(max_examples=PLAN_EXAMPLES, **FUZZ)
        @given(FAMILIES[family])
        def check(text: str) -> None:
            nonlocal tried
            tried += 1
            plan_and_check(voice, text, outcomes)

        check()
        count("plan_speech", family, tried)
        totals = FIGURES.setdefault("plan_speech_outcomes", {})
        for key, value in outcomes.items():
            totals[key] = totals.get(key, 0) + value
        assert tried >= PLAN_EXAMPLES

    @pytest.mark.parametrize(
        ("text", "outcome"),
        [
            ("😀🎉", "nothing_to_say"),
            ("。、！？…「」", "nothing_to_say"),
            ("\u0301\u0302\u20dd", "nothing_to_say"),
            ("こ\x00ん\x1bに\x7fち\u200bは", "plan"),
            ("\ud800あ\udfff", "plan"),  # lone surrogates: only reachable in-process (JSON refuses them)
            (("😀" * 40 + "あ") * 8, "plan"),  # a long run of emoji: the first segments have nothing to say
            ("あ" * LONG, "plan"),
        ],
        ids=["emoji", "punctuation", "combining", "controls_in_kana", "lone_surrogates", "emoji_run_with_kana", "kana_run"],
    )
    def test_plan_speech_on_known_hard_inputs(self, demo_voice, g2p_errors, text: str, outcome: str) -> None:
        outcomes: Counter[str] = Counter()
        plan_and_check(demo_voice.voice, text, outcomes)
        assert outcomes[outcome] == 1, outcomes

    def test_g2p_of_other_languages_returns_phonemes_or_none(self, demo_voice, g2p_errors) -> None:
        """Every language, on the demo's stand-in G2P data: a voice of each language reading hostile text run by run
        (engine/text/script_runs.py) or forced into one language: `_phonemes_or_none` gives phonemes or None, or raises
        UnreadableText (the request's 400), nothing else."""
        from engine.synthesis.speech import UnreadableText, _phonemes_or_none

        tried: Counter[str] = Counter()

        @settings(max_examples=OTHER_LANGUAGE_EXAMPLES, **FUZZ)
        @given(
            hostile_text(),
            st.sampled_from(["en", "zh", "ja", "ko"]),
            st.sampled_from([None, "en", "zh", "ja", "ko"]),
        )
        def check(text: str, language: str, forced: str | None) -> None:
            for piece in segment(text, FIRST_BUDGET, BUDGET)[:3]:
                try:
                    phonemes = _phonemes_or_none(piece, language, "fuzz-other", forced)
                except UnreadableText:  # a 400 for the client, not a crash (g2p_errors counts its log line)
                    continue
                tried[f"{forced or language}:{'phonemes' if phonemes is not None else 'none'}"] += 1
                if phonemes is not None:
                    well_formed(phonemes)

        check()
        FIGURES["other_language_segments"] = dict(sorted(tried.items()))
        assert sum(tried.values()) >= OTHER_LANGUAGE_EXAMPLES // 2


# ---- 3. the nastiest inputs, end to end ----------------------------------------------------------


def max_input_chars() -> int:
    """The server inherits this process's environment (conftest), so it reads the same setting."""
    from settings import Settings

    return Settings.from_env().max_input_chars


def body(text: str) -> bytes:
    return json.dumps({"model": "demo", "input": text}, ensure_ascii=False).encode("utf-8", "surrogatepass")


def raw(text_literal: bytes) -> bytes:
    """A body whose `input` is exactly these JSON bytes (escapes are not interpreted by Python)."""
    return b'{"model": "demo", "input": "' + text_literal + b'"}'


#: (id, body): each must be spoken, 200 with a WAV that decodes.
SPOKEN = [
    ("emoji_around_text", body("😀こんにちは🎉👨‍👩‍👧‍👦")),
    ("keycap_digits_are_read", body("1️⃣2️⃣")),
    ("rtl_bidi_and_combining_with_japanese", body("\u202bはい\u202c שָׁלוֹם مَرْحَبًا\u0301\u0302")),
    ("zalgo_latin", body("Z̷̢̛a̶l̵g̸o̴")),
    ("controls_inside_japanese", body("こ\x00ん\x1bに\x7fち\u200bは\x07。")),
    ("ansi_escape_sequences", body("\x1b[31mはい\x1b[0m")),
    ("digits_and_urls", body("http://a.jp/x?y=1 3.14 10%")),
    ("mixed_zh_ja_en", body("你好。はい。OK.")),
    ("unpunctuated_kana", body("あいうえおかきくけこさしすせそ" * 2)),
    ("odd_whitespace_and_line_breaks", body("\n\n\tはい\r\n\r\n\u3000いいえ\u2028\x85")),
    ("surrogate_pair_escape", raw(b"\\u3042\\ud83d\\ude00")),
]
#: (id, body, code, what the message must say): each must be a 400 that says why.
REFUSED = [
    ("emoji_only", body("😀🎉👨‍👩‍👧‍👦🇯🇵👍🏽❤️🏳️‍🌈🫠🧑‍💻"), "nothing_to_say", "nothing pronounceable"),
    ("rtl_and_combining_only", body("\u202eשָׁלוֹם עוֹלָם، مَرْحَبًا بِالْعَالَمِ\u202c"), "nothing_to_say", "nothing pronounceable"),
    ("combining_marks_only", body("\u0301\u0302\u0303\u20dd\u0488"), "nothing_to_say", "nothing pronounceable"),
    (
        "control_characters_only",
        body("\x00\x01\x02\x07\x08\x0b\x0e\x1b\x7f\u200b\ufeff\u2066\u2069\u200e"),
        "nothing_to_say",
        "nothing pronounceable",
    ),
    ("unicode_whitespace_only", body("\u3000\x85\u2028\u2029\t\n\x1c\x1d\x1e\x1f\xa0"), "invalid_value", "empty"),
    ("punctuation_only", body("。、！？…「」『』（）——,.;:!?・〜~"), "nothing_to_say", "nothing pronounceable"),
    ("noncharacters_and_private_use", body("\ufffe\uffff\U0010ffff\ue000\U000f0000"), "nothing_to_say", "nothing pronounceable"),
    ("lone_high_surrogate_escape", raw(b"\\ud800"), "invalid_json", "surrogate"),
    ("lone_low_surrogate_escape", raw(b"\\udfffx"), "invalid_json", "surrogate"),
    ("utf8_encoded_surrogate_bytes", raw(b"\xed\xa0\x80"), "invalid_json", "UTF-8"),
    ("raw_control_character_in_json_string", raw(b"\x00"), "invalid_json", "control character"),
]


def error_of(response: httpx.Response, status: int, code: str) -> dict:
    """OpenAI's error shape; a JSON the server could not parse names no field, any other 400 here names `input`."""
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert set(payload) == {"error"} and set(payload["error"]) == {"message", "type", "param", "code"}
    error = payload["error"]
    param = None if code == "invalid_json" else "input"
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)
    assert isinstance(error["message"], str) and error["message"]
    return error


def post(server: ServerProcess, content: bytes) -> tuple[httpx.Response, str, str]:
    """POST the raw body; returns the response (body read: a broken stream raises), its request id and the
    server log written meanwhile (once the request's own log line is there)."""
    client_id = f"fuzz-{uuid.uuid4().hex[:12]}"
    before = len(server.log())
    response = httpx.post(
        f"{server.base_url}{SPEECH}",
        content=content,
        timeout=300,
        headers={"content-type": "application/json", "x-request-id": client_id},
    )
    request_id = response.headers["x-request-id"]  # the server's own
    assert f"request_id={request_id} " in server.log_line(f"client_request_id={client_id}", timeout=30)
    FIGURES["e2e_inputs"] = int(FIGURES.get("e2e_inputs", 0)) + 1
    return response, request_id, server.log()[before:]


def assert_clean_log(log: str) -> None:
    for sign in ("Traceback", "synthesis failed", "Exception in ASGI application", "Logging error"):
        assert sign not in log, f"{sign!r} in the server log:\n{log[-4000:]}"


@pytest.mark.e2e
@pytest.mark.parametrize("content", [case[1] for case in SPOKEN], ids=[case[0] for case in SPOKEN])
def test_nasty_input_is_spoken(server: ServerProcess, content: bytes) -> None:
    response, request_id, log = post(server, content)
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(response.content), dtype="int16")
    assert rate == 32000 and audio.ndim == 1 and audio.size > 0
    assert audio.size * 2 == len(response.content) - 44  # every byte after the header is whole samples
    line = server.log_line(f"request_id={request_id} ")
    assert "outcome=ok" in line, line
    assert_clean_log(log)


@pytest.mark.e2e
def test_unpunctuated_run_of_emoji_skips_the_silent_segments(server: ServerProcess) -> None:
    """328 characters without punctuation, 8 of them kana: several segments are only emoji and are skipped."""
    response, request_id, log = post(server, body(("😀" * 40 + "あ") * 8))
    assert response.status_code == 200
    line = server.log_line(f"request_id={request_id} ")
    skipped = int(line.split(" skipped=", 1)[1].split()[0])
    done = int(line.split(" segments=", 1)[1].split()[0])
    assert skipped > 0 and done > 0 and "outcome=ok" in line, line
    assert_clean_log(log)


@pytest.mark.e2e
@pytest.mark.parametrize(("content", "code", "reason"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
def test_nasty_input_is_refused_with_a_reason(server: ServerProcess, content: bytes, code: str, reason: str) -> None:
    response, request_id, log = post(server, content)
    error = error_of(response, 400, code)
    assert reason in error["message"], error
    assert f"status=400 code={code} outcome=rejected" in server.log_line(f"request_id={request_id} ")
    assert_clean_log(log)


@pytest.mark.e2e
def test_longest_inputs_take_the_400_paths(server: ServerProcess) -> None:
    """At MAX_INPUT_CHARS every segment is planned (and refused: nothing to say); one more character is too long.
    The 4096 emoji also arrive as escaped surrogate pairs (12 bytes each), as `json.dumps` sends them."""
    limit = max_input_chars()
    escaped = json.dumps({"model": "demo", "input": "😀" * limit}).encode()
    assert b"\\ud83d\\ude00" in escaped
    for content, code, reason in [
        (body("😀" * limit), "nothing_to_say", "nothing pronounceable"),
        (escaped, "nothing_to_say", "nothing pronounceable"),
        (body("あ" * (limit + 1)), "string_above_max_length", f"the limit is {limit}"),
        (body("a" * (limit + 1)), "string_above_max_length", f"the limit is {limit}"),
    ]:
        response, _, log = post(server, content)
        assert reason in error_of(response, 400, code)["message"]
        assert_clean_log(log)
