"""The T2S decoding of one segment, resumable: tokens come out a few at a time, so the vocoder can start early.

`SegmentDecoder.advance` runs decoding steps until it has `count` new tokens or the model stops, and keeps the
KV cache between calls, so one segment's decoding can be split over several scheduler jobs with vocoder
chunks in between. This replaces Genie's loop, whose stop event is global, whose step limit is a hard-coded
500 and which replays the reference audio when decoding stops at step 0 (`y[:, -0:]` is the whole sequence).

A stage decoder rewritten by engine/models/decoder_graph.py keeps its KV cache in one buffer per layer, allocated
once per segment for its token cap and written in place through IO binding: per step only the new token,
the stop flag and two lengths cross between Python and onnxruntime. Any other stage decoder (Genie's graph
as it is) runs the way Genie runs it, the whole cache in and out as numpy arrays.
"""

from __future__ import annotations

import threading

import numpy as np
import onnxruntime

from engine.models.decoder_graph import SEQLENS, TOTAL, is_rewritten
from engine.text.g2p import Phonemes
from engine.voices.voice import Reference, Voice

EOS_TOKEN = 1024


class Cancelled(Exception):
    """The request this segment belonged to went away."""


def encode(voice: Voice, phonemes: Phonemes, reference: Reference) -> tuple[np.ndarray, np.ndarray]:
    """The T2S encoder: (x, prompts), what the first-stage decoder starts a segment from."""
    feed = {
        "ref_seq": reference.phonemes,
        "text_seq": phonemes.sequence,
        "ref_bert": reference.bert,
        "text_bert": phonemes.bert,
        "ssl_content": reference.ssl,
    }
    x, prompts = voice.encoder.run(None, feed)
    return x, prompts


class SegmentDecoder:
    def __init__(self, voice: Voice, phonemes: Phonemes, reference: Reference, cap: int) -> None:
        self.voice = voice
        self.phonemes = phonemes
        self.reference = reference
        self.cap = cap
        self.finished = False
        self.stopped = False  # the model ended the segment itself (not the cap)
        self._steps: _Steps | None = None
        self._handed_out = 0

    @property
    def generated(self) -> int:
        """Tokens decoded so far (the EOS included when there was one)."""
        return 0 if self._steps is None else self._steps.generated

    def advance(self, count: int, cancel: threading.Event) -> np.ndarray:
        """At least `count` new tokens (int64), fewer only when the segment ends; checks `cancel` between steps."""
        if self._steps is None:
            self._steps = self._start()
        while not self.finished and self.generated - self._handed_out < count:
            if self.generated >= self.cap:
                self.finished = True
                break
            if cancel.is_set():
                raise Cancelled
            if self._steps.step():
                self.stopped = self.finished = True
        return self._take()

    def _start(self) -> _Steps:
        x, prompts = encode(self.voice, self.phonemes, self.reference)
        state = list(self.voice.first_stage_decoder.run(None, {"x": x, "prompts": prompts}))
        session = self.voice.stage_decoder
        if is_rewritten([item.name for item in session.get_inputs()]):
            return _BufferSteps(session, state, int(prompts.shape[1]), self.cap)
        return _ArraySteps(session, state, int(prompts.shape[1]))

    def _take(self) -> np.ndarray:
        """The tokens not handed out yet, up to the first EOS (after which nothing is ever handed out)."""
        assert self._steps is not None
        new = self._steps.tokens()[self._handed_out :]
        eos = np.flatnonzero(new >= EOS_TOKEN)
        if eos.size:
            new = new[: eos[0]]
            self.finished = True
            self._handed_out = self.generated  # the EOS and anything after it are never handed out
        else:
            self._handed_out += int(new.size)
        return new.astype(np.int64, copy=True)


class _Steps:
    """One segment's decoding state between steps, and the step itself."""

    def __init__(self, prompt_length: int) -> None:
        self.prompt_length = prompt_length
        self.generated = 0

    def step(self) -> bool:
        """One decoding step; True when the model says the segment ends."""
        raise NotImplementedError

    def sequence(self) -> np.ndarray:
        """`y`: the prompt's tokens then the generated ones, int64 [1, n]."""
        raise NotImplementedError

    def tokens(self) -> np.ndarray:
        return self.sequence()[0, self.prompt_length :]


class _ArraySteps(_Steps):
    """Genie's graph as it is: y, y_emb and the whole cache go in and come back as new arrays every step."""

    def __init__(self, session: onnxruntime.InferenceSession, state: list[np.ndarray], prompt_length: int) -> None:
        super().__init__(prompt_length)
        self.session, self.state = session, state
        self.names = [item.name for item in session.get_inputs()]
        cache = [name.replace("past_", "present_", 1) for name in self.names if name.startswith("past_")]
        self.outputs = ["y", "y_emb", "stop_condition_tensor", *cache]
        self.generated = int(state[0].shape[1]) - prompt_length

    def step(self) -> bool:
        y, y_emb, stop, *cache = self.session.run(self.outputs, dict(zip(self.names, self.state, strict=True)))
        self.state = [y, y_emb, *cache]
        self.generated += 1
        return bool(stop)

    def sequence(self) -> np.ndarray:
        return self.state[0]


class _BufferSteps(_Steps):
    """A rewritten graph: each layer's cache is one buffer sized for the segment, bound as input and output."""

    OUTPUTS = ("y", "y_emb", "stop_condition_tensor")  # bound first, so get_outputs() lists them first

    def __init__(self, session: onnxruntime.InferenceSession, state: list[np.ndarray], prompt_length: int, cap: int) -> None:
        super().__init__(prompt_length)
        self.session = session
        y, y_emb, *cache = state
        self.generated = int(y.shape[1]) - prompt_length
        self.length = int(cache[0].shape[0])  # entries in the cache
        inputs = {item.name: item for item in session.get_inputs()}
        self.binding = session.io_binding()
        for name in self.OUTPUTS:
            self.binding.bind_output(name, "cpu")
        # Untouched pages of np.zeros are never committed, so memory follows the tokens decoded, not the cap.
        capacity = self.length + cap + 1
        self.buffers = []  # keeps the arrays alive while onnxruntime writes into them
        for name, entries in zip([name for name in inputs if name.startswith("past_")], cache, strict=True):
            _, heads, _, size = inputs[name].shape
            buffer = np.zeros((1, heads, capacity, size), np.float32)
            buffer[0, :, : self.length] = entries.reshape(self.length, heads, size).transpose(1, 0, 2)
            value = onnxruntime.OrtValue.ortvalue_from_numpy(buffer)
            self.buffers.append(buffer)
            self.binding.bind_ortvalue_input(name, value)
            self.binding.bind_ortvalue_output(name.replace("past_", "present_", 1), value)
        self.y = onnxruntime.OrtValue.ortvalue_from_numpy(y)
        self.y_emb = onnxruntime.OrtValue.ortvalue_from_numpy(y_emb)

    def step(self) -> bool:
        binding = self.binding
        binding.bind_ortvalue_input("iy", self.y)
        binding.bind_ortvalue_input("iy_emb", self.y_emb)
        binding.bind_cpu_input(SEQLENS, np.array([self.length], np.int32))
        binding.bind_cpu_input(TOTAL, np.array(self.length + 1, np.int32))
        for name in self.OUTPUTS:
            binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        self.y, self.y_emb, stop = binding.get_outputs()[:3]
        self.length += 1
        self.generated += 1
        return bool(stop.numpy())

    def sequence(self) -> np.ndarray:
        return self.y.numpy()
