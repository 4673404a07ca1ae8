"""The T2S decoding of one segment, resumable: tokens come out a few at a time, so the vocoder can start early.

`SegmentDecoder.advance` runs decoding steps until it has `count` new tokens or the model stops, and keeps the
KV cache between calls, so one segment's decoding can be split over several scheduler jobs with vocoder
chunks in between. This replaces Genie's loop, whose stop event is global, whose step limit is a hard-coded
500 and which replays the reference audio when decoding stops at step 0 (`y[:, -0:]` is the whole sequence).
"""

from __future__ import annotations

import threading

import numpy as np

from engine.g2p import Phonemes
from engine.voice import Reference, Voice

EOS_TOKEN = 1024


class Cancelled(Exception):
    """The request this segment belonged to went away."""


class SegmentDecoder:
    def __init__(self, voice: Voice, phonemes: Phonemes, reference: Reference, cap: int) -> None:
        self.voice = voice
        self.phonemes = phonemes
        self.reference = reference
        self.cap = cap
        self.finished = False
        self.stopped = False  # the model ended the segment itself (not the cap)
        self._state: list[np.ndarray] | None = None  # y, y_emb and the KV cache, between steps
        self._prompt_length = 0
        self._handed_out = 0

    @property
    def generated(self) -> int:
        """Tokens decoded so far (the EOS included when there was one)."""
        return 0 if self._state is None else int(self._state[0].shape[1]) - self._prompt_length

    def advance(self, count: int, cancel: threading.Event) -> np.ndarray:
        """At least `count` new tokens (int64), fewer only when the segment ends; checks `cancel` between steps."""
        if self._state is None:
            self._start()
        assert self._state is not None
        names = [item.name for item in self.voice.stage_decoder.get_inputs()]
        while not self.finished and self.generated - self._handed_out < count:
            if self.generated >= self.cap:
                self.finished = True
                break
            if cancel.is_set():
                raise Cancelled
            y, y_emb, stop, *cache = self.voice.stage_decoder.run(None, dict(zip(names, self._state, strict=True)))
            self._state = [y, y_emb, *cache]
            if stop:
                self.stopped = self.finished = True
        return self._take()

    def _start(self) -> None:
        x, prompts = self.voice.encoder.run(
            None,
            {
                "ref_seq": self.reference.phonemes,
                "text_seq": self.phonemes.sequence,
                "ref_bert": self.reference.bert,
                "text_bert": self.phonemes.bert,
                "ssl_content": self.reference.ssl,
            },
        )
        self._prompt_length = int(prompts.shape[1])
        self._state = list(self.voice.first_stage_decoder.run(None, {"x": x, "prompts": prompts}))

    def _take(self) -> np.ndarray:
        """The tokens not handed out yet, up to the first EOS (after which nothing is ever handed out)."""
        assert self._state is not None
        y = self._state[0]
        new = y[0, self._prompt_length + self._handed_out :]
        eos = np.flatnonzero(new >= EOS_TOKEN)
        if eos.size:
            new = new[: eos[0]]
            self.finished = True
            self._handed_out = self.generated  # the EOS and anything after it are never handed out
        else:
            self._handed_out += int(new.size)
        return new.astype(np.int64, copy=True)
