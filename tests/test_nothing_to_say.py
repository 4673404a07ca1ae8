"""Text with nothing speakable is refused by a cheap check, without a G2P call per segment."""

from __future__ import annotations

from types import SimpleNamespace

import anyio
import pytest

from engine.synthesis import speech


def test_marks_only_text_is_refused_without_any_g2p_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counting(text: str, language: str, **options: object) -> None:
        calls.append(text)
        raise AssertionError("G2P must not run for text without a letter or digit")

    monkeypatch.setattr(speech, "text_to_phonemes", counting)
    voice = SimpleNamespace(language="ja")
    with pytest.raises(speech.NothingToSay):
        anyio.run(lambda: speech.plan_speech(voice, ". " * 2048, 24, 120, "marks"))  # type: ignore[arg-type]
    assert calls == []  # facf13a made 682 calls, one per segment


def test_has_letters() -> None:
    assert not speech.has_letters(". " * 2048 + "。、！？…🙂")
    assert all(speech.has_letters(text) for text in ("a", "7", "あ", "龍", "한"))
