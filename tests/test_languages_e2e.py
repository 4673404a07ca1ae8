"""End to end: every language through the real server and the OpenAI SDK, on the four demo voices.

The demo voices' length rule gives each segment 2 semantic tokens (0.08 s) per phoneme, so the audio's length
follows the phonemes the server's G2P found: a text read in the wrong language, or skipped, shows in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import client, sse_usage, start_demo_server, wav_info
from tests.server_process import ServerProcess

pytestmark = pytest.mark.e2e

ALL_DEMO_VOICES = "demo,demo-zh,demo-en,demo-ko"
#: Per voice: a sentence, and a longer text in the same language.
TEXTS = {
    "demo": ("今日はいい天気ですね。", "今日はいい天気ですね。明日は雨が降るそうなので、傘を忘れないでください。"),
    "demo-zh": ("你好，这是测试文本。", "你好，这是测试文本。明天可能会下雨，出门的时候别忘了带伞。"),
    "demo-en": ("Hello, this is a test.", "Hello, this is a test. It may rain tomorrow, so please take an umbrella."),
    "demo-ko": ("안녕하세요, 반갑습니다.", "안녕하세요, 반갑습니다. 내일은 비가 온다고 하니 우산을 챙기세요."),
}


@pytest.fixture(scope="module")
def polyglot(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with every demo voice (DEMO_VOICES), as `--demo` serves them by default."""
    process = start_demo_server("languages", tmp_path_factory.mktemp("no-models"), {"DEMO_VOICES": ALL_DEMO_VOICES})
    yield process
    process.stop()


def speech(server: ServerProcess, model: str, text: str, voice: str = "alloy", **fields: object) -> bytes:
    response = client(server).audio.speech.create(model=model, input=text, voice=voice, response_format="wav", **fields)  # type: ignore[arg-type]
    return response.content


def test_every_demo_voice_is_listed_with_its_language(polyglot: ServerProcess) -> None:
    models = {model.id for model in client(polyglot).models.list()}
    assert {"demo", "demo-zh", "demo-en", "demo-ko"} <= models
    for name, language in (("demo", "Japanese"), ("demo-zh", "Chinese"), ("demo-en", "English"), ("demo-ko", "Korean")):
        polyglot.log_line(f"voice={name} outcome=loaded kind=V2ProPlus language={language} ")


def test_the_plans_example_a_chinese_voice_reads_chinese(polyglot: ServerProcess) -> None:
    audio = speech(polyglot, "demo-zh", "你好，这是测试文本。", voice="alloy")
    rate, channels, _, seconds = wav_info(audio)
    assert (rate, channels) == (32000, 1)
    # Two segments, "你好，" and "这是测试文本。", each G2P'd with a leading "。": ". n i2 h ao3 ," (6 phonemes) and
    # ". zh e4 sh ir4 c e4 sh ir4 w en2 b en3 ." (14). The length rule stops a segment after 2 tokens per phoneme
    # plus the one of the stopping step: 13 + 29 tokens of 0.04 s.
    assert seconds == pytest.approx(42 * 0.04, abs=0.001)


@pytest.mark.parametrize("voice", list(TEXTS))
def test_in_every_language_the_audio_grows_with_the_text(polyglot: ServerProcess, voice: str) -> None:
    short, long = TEXTS[voice]
    short_seconds = wav_info(speech(polyglot, voice, short))[3]
    long_seconds = wav_info(speech(polyglot, voice, long))[3]
    assert short_seconds > 0.5
    assert long_seconds > 2 * short_seconds


@pytest.fixture(scope="module")
def english_phonemes(demo_root: Path) -> object:
    """Phonemes of an English word as the server's G2P reads it (no segment prefix)."""
    from engine.genie import import_genie
    from engine.text.g2p import text_to_phonemes

    import_genie(demo_root / "GenieData")
    return lambda word: text_to_phonemes(word, "en", prefix="").count


@pytest.mark.parametrize(
    ("voice", "text", "word", "host"),
    [
        ("demo-zh", "我用iPhone打电话。", "iPhone", "zh"),
        ("demo-ko", "저는 iPhone을 샀어요.", "iPhone", "ko"),
        ("demo", "今日はGitHubを見た。", "GitHub", "ja"),
    ],
)
def test_usage_counts_the_english_word_of_a_sentence_in_english(
    polyglot: ServerProcess, english_phonemes: object, voice: str, text: str, word: str, host: str
) -> None:
    usage = sse_usage(polyglot, text, voice)
    languages = usage["input_token_details"]["languages"]
    assert set(languages) == {host, "en"}
    assert languages["en"] == english_phonemes(word)  # read by the English G2P, phoneme for phoneme
    assert sum(languages.values()) == usage["input_tokens"]


def test_the_language_field_reads_a_whole_input_in_one_language(polyglot: ServerProcess) -> None:
    usage = sse_usage(polyglot, "我用iPhone打电话。", "demo-zh", language="zh")
    assert list(usage["input_token_details"]["languages"]) == ["zh"]
    usage = sse_usage(polyglot, "Hello, 안녕하세요.", "demo-en", language="ko")  # Latin letters spelled in Hangul
    assert list(usage["input_token_details"]["languages"]) == ["ko"]


@pytest.mark.parametrize("text", ["嗯。", "呣，好的。", "唔，我知道了。"])
def test_the_chinese_interjections_genie_cannot_read_are_spoken(polyglot: ServerProcess, text: str) -> None:
    response = client(polyglot).audio.speech.with_raw_response.create(
        model="demo-zh", voice="alloy", input=text, response_format="wav"
    )
    assert wav_info(response.content)[3] > 0.1
    line = polyglot.log_line(f"request_id={response.headers['x-request-id']} ")
    assert " skipped=0 " in line and " outcome=ok " in line and " phonemes=zh:" in line
