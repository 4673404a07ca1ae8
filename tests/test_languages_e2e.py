"""End to end: every language through the real server and the OpenAI SDK, on the four demo voices.

The demo voices' length rule gives each segment 2 semantic tokens (0.08 s) per phoneme, so the audio's length
follows the phonemes the server's G2P found: a text read in the wrong language, or skipped, shows in it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import client, start_demo_server, wav_info
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


def sse_usage(server: ServerProcess, model: str, text: str, **fields: object) -> dict:
    """The `usage` of the last server-sent event, checking the audio events on the way."""
    with client(server).audio.speech.with_streaming_response.create(
        model=model,
        input=text,
        voice="alloy",
        response_format="pcm",
        stream_format="sse",
        **fields,  # type: ignore[arg-type]
    ) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    audio = b"".join(base64.b64decode(event["audio"]) for event in events[:-1])
    assert events[-1]["type"] == "speech.audio.done" and len(audio) > 0
    return events[-1]["usage"]


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
