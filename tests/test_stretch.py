"""`speed`: the pitch-preserving time-stretch (wavstream.stretch), on real signals.

Each check is also run, where that is cheap, against a wrong implementation it must reject (plain resampling,
hard cuts), so a test that cannot fail shows up here rather than in production.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from wavstream.stretch import MAX_SPEED, MIN_SPEED, TimeStretcher

SR = 32000
SPEEDS = [0.25, 0.5, 0.8, 1.25, 2.0, 4.0]


def tone(freq: float, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def speech_like(seconds: float = 2.0, f0_start: float = 90.0, f0_end: float = 200.0) -> np.ndarray:
    """A voiced 'utterance': harmonics of a gliding f0 under two formants, amplitude-modulated at 4 syllables/s."""
    t = np.arange(round(seconds * SR)) / SR
    f0 = f0_start + (f0_end - f0_start) * (0.5 - 0.5 * np.cos(np.pi * t / seconds))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = np.zeros_like(t)
    for h in range(1, 30):
        fh = h * f0
        gain = np.exp(-(((fh - 700) / 400) ** 2)) + 0.6 * np.exp(-(((fh - 1800) / 500) ** 2)) + 0.2 / h
        x += np.where(fh < SR / 2 - 1000, gain, 0.0) * np.sin(h * phase + h)
    x *= 0.5 - 0.5 * np.cos(2 * np.pi * 4 * t)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def faded(x: np.ndarray, seconds: float = 0.010) -> np.ndarray:
    n = round(seconds * SR)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    y = x.copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def peak_frequency(x: np.ndarray) -> float:
    """Strongest frequency (zero-padded FFT, parabolic interpolation), ends trimmed."""
    x = x[len(x) // 10 : -len(x) // 10]
    n = 1 << 18
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n)) + 1e-20
    k = int(np.argmax(spectrum))
    a, b, c = np.log(spectrum[k - 1 : k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SR / n


def f0_at(x: np.ndarray, centre: int, voicing: float = 0.6, n: int = 1024) -> float:
    """f0 of the frame around `centre` by autocorrelation (60-500 Hz); NaN where unvoiced or quiet."""
    frame = x[max(centre - n // 2, 0) : centre + n // 2].astype(np.float64)
    if len(frame) < n or rms(frame) < 0.01:
        return float("nan")
    frame -= frame.mean()
    ac = np.fft.irfft(np.abs(np.fft.rfft(frame, 2 * n)) ** 2)[:n]
    lo, hi = SR // 500, SR // 60
    lag = lo + int(np.argmax(ac[lo:hi]))
    if ac[lag] < voicing * ac[0]:
        return float("nan")
    a, b, c = ac[lag - 1 : lag + 2]
    return SR / (lag + 0.5 * (a - c) / (a - 2 * b + c))


def naive_resample(x: np.ndarray, speed: float) -> np.ndarray:
    """The wrong way to change speed: right duration, but pitch moves by the same factor."""
    return np.interp(np.arange(0, len(x) - 1, speed), np.arange(len(x)), x).astype(np.float32)


@pytest.mark.parametrize("speed", SPEEDS)
def test_duration_scales_by_one_over_speed(speed: float) -> None:
    """Per segment and over a whole stream of segments. Fails for anything that keeps the input's length."""
    stretcher = TimeStretcher(SR, speed)
    lengths = [round(s * SR) for s in (0.3, 1.7, 4.0, 10.0, 0.55)]
    total_out = 0
    for n in lengths:
        out = stretcher.process(faded(speech_like(n / SR)))
        assert out.dtype == np.float32 and out.ndim == 1
        assert abs(len(out) - n / speed) <= 1
        total_out += len(out)
    total_out += len(stretcher.flush())
    assert total_out == pytest.approx(sum(lengths) / speed, rel=0.01)


@pytest.mark.parametrize("freq", [220.0, 440.0])
@pytest.mark.parametrize("speed", SPEEDS)
def test_pitch_of_a_tone_stays_put(freq: float, speed: float) -> None:
    """The FFT peak stays within 2%. Naive resampling moves it by the speed factor (checked here): it would fail."""
    x = tone(freq, 2.0)
    out = TimeStretcher(SR, speed).process(x)
    assert peak_frequency(out) == pytest.approx(freq, rel=0.02)
    assert abs(peak_frequency(naive_resample(x, speed)) / freq - 1) > 0.2  # the measurement does see a wrong pitch


@pytest.mark.parametrize("speed", SPEEDS)
def test_pitch_contour_of_speech_like_signal_follows_the_input(speed: float) -> None:
    """f0 gliding 90 -> 200 Hz (a low voice needs the alignment search to span a long period): at output time t
    the f0 is the input's f0 at t * speed, within 3% (half a semitone) in 90% of the frames. Naive resampling fails
    this by the speed factor.

    In the output a 32 ms frame holds `speed` times more of the utterance (faster syllables, a steeper glide), which
    blurs its periodicity and averages the glide at high speeds: a lower voicing threshold for the output, and
    3% rather than the 2% that steady tones keep (test above)."""
    x = speech_like(2.0)
    for out, should_pass in ((TimeStretcher(SR, speed).process(x), True), (naive_resample(x, speed), False)):
        ratios = []  # over the frames where the input is voiced; no f0 in the output counts as a miss
        for centre in range(512, len(out) - 512, 320):
            f_in = f0_at(x, round(centre * speed))
            if not np.isnan(f_in):
                ratios.append(f0_at(out, centre, voicing=0.3) / f_in)
        assert len(ratios) >= 10
        within = np.mean(np.abs(np.array(ratios) - 1) < 0.03)  # NaN compares False: a miss
        if should_pass:
            assert within >= 0.9, f"only {within:.0%} of voiced frames kept their pitch"
        else:
            assert within < 0.5


def test_speed_one_is_an_exact_passthrough() -> None:
    x = speech_like(1.0)
    stretcher = TimeStretcher(SR, 1.0)
    assert stretcher.passthrough
    assert stretcher.process(x) is x  # same object: nothing computed, nothing copied
    assert np.array_equal(stretcher.process(x[:10]), x[:10])
    assert len(stretcher.flush()) == 0
    doubles = x.astype(np.float64)
    out = stretcher.process(doubles)
    assert out.dtype == np.float32 and np.array_equal(out, x)


def max_jump_near(y: np.ndarray, positions: list[int], radius: int = 2) -> float:
    jumps = np.abs(np.diff(y.astype(np.float64)))
    return max(float(jumps[max(p - radius, 0) : p + radius].max()) for p in positions)


def max_jump_inside(y: np.ndarray, bounds: list[tuple[int, int]], margin: int = 2) -> float:
    jumps = np.abs(np.diff(y.astype(np.float64)))
    return max(float(jumps[a + margin : b - margin - 1].max()) for a, b in bounds)


@pytest.mark.parametrize("speed", SPEEDS)
def test_joins_between_segments_do_not_click(speed: float) -> None:
    """Three segments with 10 ms fades, stretched one by one and concatenated (as streamed): the jump from one
    sample to the next at a join is no larger than inside the segments, and every segment's first and last
    millisecond stays quiet. Hard-cut segments (no fades) show the check does catch a click."""
    segments = [faded(speech_like(0.9, 110, 150)), faded(tone(330, 0.6) + tone(660, 0.6, 0.2)), faded(speech_like(1.3, 180, 120))]
    stretcher = TimeStretcher(SR, speed)
    outs = [stretcher.process(s) for s in segments]
    stream = np.concatenate(outs + [stretcher.flush()])
    bounds, start = [], 0
    for out in outs:
        bounds.append((start, start + len(out)))
        start += len(out)
    joins = [b for _, b in bounds[:-1]]
    assert max_jump_near(stream, joins) <= max_jump_inside(stream, bounds)
    edge = SR // 1000
    for seg, out in zip(segments, outs, strict=True):
        quiet = 0.15 * np.abs(seg).max()
        assert np.abs(out[:edge]).max() <= quiet and np.abs(out[-edge:]).max() <= quiet

    hard = [tone(330, 0.3301), tone(523, 0.2003), tone(330, 0.3)]  # cut mid-wave: clicks at the joins
    hard_bounds = np.cumsum([0] + [len(h) for h in hard])
    hard_stream = np.concatenate(hard)
    pairs = list(itertools.pairwise(hard_bounds))
    assert max_jump_near(hard_stream, list(hard_bounds[1:-1])) > max_jump_inside(hard_stream, pairs)


@pytest.mark.parametrize("speed", SPEEDS)
def test_speech_like_signal_keeps_its_energy(speed: float) -> None:
    """RMS within 10%. Overlap-adding frames without aligning them (plain OLA) cancels partials and loses about
    14% of the RMS on this signal, so it would fail."""
    x = speech_like(2.0)
    out = TimeStretcher(SR, speed).process(x)
    assert 0.9 <= rms(out) / rms(x) <= 1.1
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("speed", [MIN_SPEED, 0.5, 2.0, MAX_SPEED])
def test_edge_cases(speed: float) -> None:
    stretcher = TimeStretcher(SR, speed)
    empty = stretcher.process(np.zeros(0, dtype=np.float32))
    assert empty.dtype == np.float32 and len(empty) == 0

    short = faded(tone(440, 0.010), 0.002)  # 10 ms: shorter than the 32 ms analysis frame
    out = stretcher.process(short)
    assert out.dtype == np.float32 and len(out) == round(len(short) / speed)
    assert np.all(np.isfinite(out)) and np.abs(out).max() <= np.abs(short).max() + 1e-6

    one = stretcher.process(np.array([0.3], dtype=np.float32))  # one sample: 0 or a few samples, never a crash
    assert len(one) == round(1 / speed)

    silence = stretcher.process(np.zeros(SR // 2, dtype=np.float32))
    assert len(silence) == round(SR / 2 / speed) and not silence.any()

    # Near full scale: output samples are weighted averages of input samples, so nothing new goes past 1.
    loud = np.clip(3 * speech_like(1.0), -0.999, 0.999).astype(np.float32)
    out = stretcher.process(loud)
    assert np.abs(out).max() <= 0.999 + 1e-6

    out = stretcher.process(speech_like(0.5).astype(np.float64))
    assert out.dtype == np.float32
    assert len(stretcher.flush()) == 0


def test_invalid_arguments_are_rejected() -> None:
    for speed in (0.2, 4.5, 0.0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            TimeStretcher(SR, speed)
    with pytest.raises(ValueError):
        TimeStretcher(0, 1.5)
    with pytest.raises(ValueError):
        TimeStretcher(SR, 1.5).process(np.zeros((2, 100), dtype=np.float32))
