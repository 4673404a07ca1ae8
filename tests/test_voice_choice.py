"""Which voice and style a request's `model` and `voice` mean (api/voices.py), on stand-in voices: every id that
/v1/audio/voices lists selects that voice whatever `model` says, as Open WebUI sends them under one model."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from api.errors import ApiError
from api.voices import choose_voice
from engine.interface import VoiceRegistry


@dataclass
class StandInVoice:
    """What choose_voice reads of a loaded voice: its name and styles."""

    name: str
    styles: dict[str, object] = field(default_factory=dict)

    def style(self, name: str) -> str | None:
        return next((style for style in self.styles if style.casefold() == name.casefold()), None)


REGISTRY = VoiceRegistry([StandInVoice("demo", {"calm": None}), StandInVoice("demo-en"), StandInVoice("demo-ko")])  # type: ignore[list-item]


def chosen(model: str, voice: str | None, aliases: dict[str, str] | None = None) -> str:
    return choose_voice(REGISTRY, model, voice, aliases or {}).id


@pytest.mark.parametrize("model", ["demo", "demo-ko", "tts-1", "gpt-4o-mini-tts", "whatever"])
@pytest.mark.parametrize("voice", ["demo", "demo/calm", "demo-en", "demo-ko", "DEMO-EN"])
def test_a_listed_voice_id_selects_that_voice_whatever_the_model(model: str, voice: str) -> None:
    assert chosen(model, voice).casefold() == voice.casefold()


@pytest.mark.parametrize(
    ("model", "voice", "expected"),
    [
        ("demo", None, "demo"),
        ("demo-en", None, "demo-en"),
        ("demo-en", "alloy", "demo-en"),  # an OpenAI voice name: the model's voice, its default clip
        ("demo", "calm", "demo/calm"),  # a style of the model's voice, by its short name
        ("demo", "Calm", "demo/calm"),
    ],
)
def test_otherwise_the_model_names_the_voice(model: str, voice: str | None, expected: str) -> None:
    assert chosen(model, voice) == expected


def test_an_alias_naming_another_voice_selects_it() -> None:
    assert chosen("demo", "nova", {"nova": "demo-ko"}) == "demo-ko"


@pytest.mark.parametrize(
    ("model", "voice", "status", "code"),
    [
        ("demo-en", "calm", 400, "voice_not_found"),  # calm is a style of demo, not a voice nor demo-en's style
        ("demo", "demo-en/calm", 400, "voice_not_found"),
        ("demo", "nobody/calm", 400, "voice_not_found"),
        ("tts-1", "alloy", 404, "model_not_found"),  # three voices: an OpenAI model name alone picks none
        ("nobody", "alloy", 404, "model_not_found"),
    ],
)
def test_what_names_no_served_voice_is_refused(model: str, voice: str, status: int, code: str) -> None:
    with pytest.raises(ApiError) as raised:
        chosen(model, voice)
    assert (raised.value.status, raised.value.code) == (status, code)
