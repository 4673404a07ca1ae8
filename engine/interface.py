"""What the HTTP layer and the entry point may use of the engine; nothing outside engine/ imports its other modules.

Start-up: `tune_allocator` (when the application is made, before the voices load), `find_voices` (GenieData,
Genie, the demo voice, the voice folders), `check_voices` for `--check`, `load_voices` into a `VoiceRegistry`.
A request: `Scheduler.join` (a `Place`, at once or in the line; `Place.wait` for its `Ticket`), `plan_speech`
(segments and their G2P, all before any byte is sent), then `SpeechRun(...).run()`, which hands each segment's float audio
at `SAMPLE_RATE` to a callback, in order. `language_code` reads a request's `language` from the one table of
languages (`language_spellings` lists what it accepts).
Errors a request can meet: `QueueFull` and `LineClosed` (admission), `NothingToSay`, `TooMuchAudio` and `UnreadableText`
(planning), `Cancelled` (the client left), `AudioLimitReached` (synthesis passed the request's audio limit),
`TokenCapReached` (a segment's decoding did not end on its own).
"""

from engine.allocator import tune_allocator
from engine.genie import GenieDataMissing
from engine.models.model_files import T2S_PRECISIONS
from engine.models.rates import SAMPLE_RATE
from engine.synthesis.audio_budget import AudioLimitReached, TooMuchAudio
from engine.synthesis.decoding import Cancelled
from engine.synthesis.scheduler import LineClosed, Place, QueueFull, Scheduler, Ticket
from engine.synthesis.speech import NothingToSay, SpeechPlan, SpeechReport, SpeechRun, UnreadableText, plan_speech
from engine.synthesis.vocoding import TokenCapReached
from engine.text.languages import language_code, language_spellings
from engine.voices.registry import VoiceRegistry, load_voices
from engine.voices.startup import FoundVoices, check_voices, find_voices
from engine.voices.voice import Voice

__all__ = [
    "SAMPLE_RATE",
    "T2S_PRECISIONS",
    "AudioLimitReached",
    "Cancelled",
    "FoundVoices",
    "GenieDataMissing",
    "LineClosed",
    "NothingToSay",
    "Place",
    "QueueFull",
    "Scheduler",
    "SpeechPlan",
    "SpeechReport",
    "SpeechRun",
    "Ticket",
    "TokenCapReached",
    "TooMuchAudio",
    "UnreadableText",
    "Voice",
    "VoiceRegistry",
    "check_voices",
    "find_voices",
    "language_code",
    "language_spellings",
    "load_voices",
    "plan_speech",
    "tune_allocator",
]
