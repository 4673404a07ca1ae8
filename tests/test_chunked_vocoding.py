"""Chunked vocoding (engine/synthesis/chunking.py): the plan of chunk sizes, the seams, and a chunked stream end to end.

Exactness is checked on the demo voice's real vocoder graph with its one random node (the VITS noise) made zero
(tests/deterministic_vocoder.py), so that chunked and whole-segment audio can be compared sample by sample.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from engine.synthesis.chunking import (
    CONTEXT_TOKENS,
    CROSSFADE_SAMPLES,
    LOOKAHEAD_TOKENS,
    MAX_CHUNK_TOKENS,
    MIN_CHUNK_TOKENS,
    OVERLOAD_GAP_S,
    SAMPLES_PER_TOKEN,
    SegmentAudio,
    chunk_size,
    chunk_turn_s,
    growing_chunk,
)
from engine.synthesis.speed import SynthesisSpeed

#: Chunked output equals the whole-segment output within this, everywhere but the crossfades at the seams
#: (measured on the demo voice: 0.0 with CONTEXT_TOKENS >= 1 and LOOKAHEAD_TOKENS >= 1; without them the
#: token beside each seam differs by up to 1e-3 on the left and 4.5e-3 on the right, against a 9e-3 peak).
TOLERANCE = 1e-5
#: "At a seam": this many samples either side of it (3 ms).
SEAM_SAMPLES = 96


def fake_vocoder(values: np.ndarray) -> np.ndarray:
    """Each token's own waveform, independent of its neighbours: the plumbing without the model."""
    ramp = np.arange(SAMPLES_PER_TOKEN, dtype=np.float32) / SAMPLES_PER_TOKEN
    return np.concatenate([ramp * 0 + float(value) / 1000 for value in values]).astype(np.float32)


def run_plan(total: int, decode_s: float, vocode_per_token_s: float, first: int) -> tuple[list[int], float]:
    """Simulate one segment: decoding `decode_s` per token beside the vocoder, chunks as `chunk_size` plans them.
    Returns the chunk sizes and the listener's total wait after the first audio."""
    speed = SynthesisSpeed(decode_s_per_token=decode_s, vocode_fixed_s=0.05, vocode_s_per_token=vocode_per_token_s)
    now, emitted, sizes, stall = 0.0, 0, [], 0.0
    first_at: float | None = None
    played_until = 0.0  # listener seconds the audio out so far lasts, from first_at
    while emitted < total:
        decoded = min(total, int(now / decode_s))
        pending = decoded - emitted
        buffered = None if first_at is None else played_until - (now - first_at)
        count = chunk_size(pending, decoded == total, buffered, speed, first)
        if count == 0:
            now += decode_s
            continue
        now += speed.vocode_s(count + CONTEXT_TOKENS)
        final = decoded == total and count == pending
        out = count if final else count - LOOKAHEAD_TOKENS
        if first_at is None:
            first_at = now
        elif now - first_at > played_until:
            late = now - first_at - played_until
            stall += late
            first_at += late
        played_until += out * 0.04
        emitted += out
        sizes.append(count)
    return sizes, stall


def test_the_first_chunk_waits_for_first_chunk_tokens_and_no_more() -> None:
    fast = SynthesisSpeed(decode_s_per_token=0.01, vocode_fixed_s=0.02, vocode_s_per_token=0.01)
    assert chunk_size(15, False, None, fast, 16) == 0
    assert chunk_size(16, False, None, fast, 16) == 16
    assert chunk_size(20, False, None, fast, 16) == 16


def test_the_first_chunk_is_first_chunk_tokens_whatever_the_speed() -> None:
    """The first audio comes first: on a slow machine too (later chunks keep their waits short instead)."""
    slow = SynthesisSpeed(decode_s_per_token=0.02, vocode_fixed_s=0.05, vocode_s_per_token=0.024)
    assert chunk_size(7, False, None, slow, 8) == 0
    assert chunk_size(8, False, None, slow, 8) == 8


def test_on_an_overloaded_machine_the_first_chunk_stays_small_and_later_ones_short() -> None:
    """Slower than real time: waits are unavoidable, so the first audio stays early and no wait is long."""
    overloaded = SynthesisSpeed(decode_s_per_token=0.05, vocode_fixed_s=0.1, vocode_s_per_token=0.05)
    assert chunk_size(16, False, None, overloaded, 16) == 16
    # One request alone: at a segment's start (nothing decoded) the wait is its decoding and its vocoding...
    size = growing_chunk(overloaded, load=0.5, pending=0)
    assert size == MIN_CHUNK_TOKENS and chunk_turn_s(size + 2, overloaded) > OVERLOAD_GAP_S
    # ...with the decoding ahead (it runs while the chunk before is vocoded), only the vocoding: larger chunks.
    ahead = growing_chunk(overloaded, load=0.5, pending=MAX_CHUNK_TOKENS)
    assert ahead > size and overloaded.vocode_s(ahead + CONTEXT_TOKENS) <= OVERLOAD_GAP_S


def test_the_more_requests_share_the_workers_the_smaller_the_chunks() -> None:
    """Each request's chunk waits for the others' turns, so chunks shrink as requests per worker grow, down to
    MIN_CHUNK_TOKENS: 4 clients on 2 workers each get a chunk about every OVERLOAD_GAP_S, not one long wait."""
    speed = SynthesisSpeed(decode_s_per_token=0.025, vocode_fixed_s=0.05, vocode_s_per_token=0.04)  # overloaded
    sizes = [chunk_size(MAX_CHUNK_TOKENS, False, 0.0, speed, 8, load) for load in (0.5, 1.0, 2.0)]
    assert sizes[0] > sizes[1] > sizes[2] == MIN_CHUNK_TOKENS, sizes
    assert speed.vocode_s(sizes[0] + CONTEXT_TOKENS) <= OVERLOAD_GAP_S  # alone, with the decoding ahead
    assert chunk_turn_s(sizes[1], speed) <= OVERLOAD_GAP_S


def test_a_segment_whose_tokens_are_all_decoded_is_vocoded_at_once() -> None:
    speed = SynthesisSpeed()
    # A short text: 11 tokens, all decoded, fewer than the first chunk: vocoded at once, not held for 16.
    assert chunk_size(11, True, None, speed, 16) == 11
    # Later, with audio enough ahead of the listener: the whole rest at once when it fits one chunk; a longer
    # rest in chunks of MAX_CHUNK_TOKENS, one after the other without waiting (all its tokens are there).
    fast = SynthesisSpeed(decode_s_per_token=0.01, vocode_fixed_s=0.02, vocode_s_per_token=0.01)
    assert chunk_size(30, True, 10.0, fast, 16) == 30
    assert chunk_size(90, True, 10.0, fast, 16) == MAX_CHUNK_TOKENS
    assert chunk_size(3, True, 0.0, speed, 16) == 3
    # Chunking off: only whole segments.
    assert chunk_size(40, False, 5.0, speed, 0) == 0
    assert chunk_size(40, True, None, speed, 0) == 40


def test_chunks_grow_and_the_last_ends_exactly_at_the_segment_end() -> None:
    sizes, stall = run_plan(total=300, decode_s=0.015, vocode_per_token_s=0.015, first=8)
    assert sizes[0] == 8
    assert 4 * sizes[0] <= max(sizes) <= MAX_CHUNK_TOKENS  # grown, but none long to wait for
    assert sizes[:-1] == sorted(sizes[:-1])
    assert all(size >= MIN_CHUNK_TOKENS for size in sizes[:-1])
    covered = sum(size - LOOKAHEAD_TOKENS for size in sizes[:-1]) + sizes[-1]
    assert covered == 300
    assert stall == 0.0


def test_on_a_slow_machine_chunks_stay_small_enough_not_to_stall() -> None:
    """Vocoder at 0.6x real time: chunks of 16 would stall (fixed cost and context); the plan keeps each in time."""
    sizes, stall = run_plan(total=400, decode_s=0.02, vocode_per_token_s=0.024, first=16)
    assert stall == 0.0
    covered = sum(size - LOOKAHEAD_TOKENS for size in sizes[:-1]) + sizes[-1]
    assert covered == 400


def test_segment_audio_plumbing_keeps_every_sample_in_place() -> None:
    values = np.arange(1, 101, dtype=np.int64)
    whole = fake_vocoder(values)
    audio = SegmentAudio(fake_vocoder)
    out = []
    second, third = 40 - 16 + LOOKAHEAD_TOKENS, 100 - 40 + LOOKAHEAD_TOKENS  # held-back tokens come again
    for start, stop, count in ((0, 16, 16), (16, 40, second), (40, 100, third)):
        audio.add(values[start:stop])
        final = stop == 100
        assert audio.pending == count
        out.append(audio.vocode(count, final))
    joined = np.concatenate(out)
    assert joined.size == whole.size and audio.chunks == 3
    assert np.allclose(joined, whole, rtol=0, atol=1e-6)  # crossfading two equal versions changes nothing


# --- the real vocoder graph of the demo voice ---------------------------------------------------------------


@pytest.fixture(scope="module")
def segment(demo_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The demo voice with a deterministic vocoder, and the tokens of one sentence."""
    import dataclasses

    from engine.genie import import_genie
    from engine.text.g2p import text_to_phonemes
    from engine.voices.voice import SharedModels, load_voice
    from engine.voices.voice_folder import inspect_voice
    from tests.deterministic_vocoder import load_deterministic_vocoder
    from tests.engine_helpers import text_to_tokens

    import_genie(demo_root / "GenieData")
    voice = load_voice(inspect_voice(demo_root / "demo"), SharedModels.load(demo_root / "GenieData", 2), 2)
    deterministic = dataclasses.replace(
        voice, vocoder=load_deterministic_vocoder(demo_root / "demo" / "tts_models", tmp_path_factory.mktemp("vits"))
    )
    phonemes = text_to_phonemes("こんにちは。今日はとてもいい天気ですね。散歩に行きましょう。", "ja")
    tokens = text_to_tokens(voice, phonemes, voice.reference, threading.Event())
    return voice, deterministic, tokens


def chunked(voice, tokens, sizes: list[int]) -> tuple[np.ndarray, list[int]]:
    """The segment vocoded in chunks of `sizes` (the last takes the rest); also where each seam falls."""
    from functools import partial

    from engine.synthesis.vocoding import vocode_values

    audio = SegmentAudio(partial(vocode_values, voice, tokens.phonemes, tokens.reference))
    audio.add(tokens.values)
    out, seams = [], []
    for size in sizes:
        out.append(audio.vocode(size, False))
        seams.append(sum(part.size for part in out))
    out.append(audio.vocode(audio.pending, True))
    return np.concatenate(out), seams


@pytest.mark.e2e
def test_chunked_output_equals_the_whole_segment_away_from_the_seams(segment) -> None:
    _, deterministic, tokens = segment
    from tests.engine_helpers import vocode

    whole = vocode(deterministic, tokens)
    assert np.array_equal(whole, vocode(deterministic, tokens)), "the deterministic vocoder is not deterministic"
    audio, seams = chunked(deterministic, tokens, [16, 24, 40])
    assert audio.size == whole.size == tokens.values.size * SAMPLES_PER_TOKEN
    near_seam = np.zeros(whole.size, dtype=bool)
    for seam in seams:
        near_seam[seam : seam + CROSSFADE_SAMPLES] = True
    error = np.abs(audio - whole)
    assert error[~near_seam].max() <= TOLERANCE
    assert error[near_seam].max() <= TOLERANCE  # both versions crossfaded are exact too, on this voice


@pytest.mark.e2e
@pytest.mark.parametrize("deterministic_noise", [True, False])
def test_no_click_at_a_seam(segment, deterministic_noise: bool) -> None:
    voice, deterministic, tokens = segment
    audio, seams = chunked(deterministic if deterministic_noise else voice, tokens, [16, 24, 40])
    jumps = np.abs(np.diff(audio))
    at_seams = np.zeros(jumps.size, dtype=bool)
    for seam in seams:
        at_seams[seam - SEAM_SAMPLES : seam + CROSSFADE_SAMPLES + SEAM_SAMPLES] = True
    assert jumps[at_seams].max() <= jumps[~at_seams].max()


@pytest.mark.e2e
def test_a_streamed_wav_is_complete_and_its_log_line_shows_the_chunks(server) -> None:
    from tests.helpers import wav_info

    text = "こんにちは。今日はとてもいい天気ですね。散歩に行きましょう。"
    body = {"model": "demo", "input": text, "response_format": "pcm", "stream_format": "sse"}
    with httpx.stream("POST", f"{server.base_url}/v1/audio/speech", json=body, timeout=120) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    pcm = b"".join(base64.b64decode(event["audio"]) for event in events if event["type"] == "speech.audio.delta")
    assert events[-1]["type"] == "speech.audio.done"
    tokens = events[-1]["usage"]["output_tokens"]
    assert len(pcm) // 2 == tokens * SAMPLES_PER_TOKEN * 24000 // 32000  # pcm is 24 kHz
    line = server.log_line(f"request_id={request_id} ")
    chunks = int(line.split(" chunks=")[1].split()[0])
    segments = int(line.split(" segments=")[1].split()[0])
    assert chunks > segments  # at least one segment came in more than one chunk
    wav = httpx.post(f"{server.base_url}/v1/audio/speech", json={"model": "demo", "input": text}, timeout=120)
    assert abs(wav_info(wav.content)[3] - tokens * 0.04) < 0.001
