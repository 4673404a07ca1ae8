"""What a GPT-SoVITS V2 / V2ProPlus model works in: its audio rate and its semantic tokens' rate."""

from __future__ import annotations

SAMPLE_RATE = 32000  # the vocoder's output and the reference clip it reads
TOKENS_PER_SECOND = 25  # semantic tokens (the T2S model's output) per second of audio
SAMPLES_PER_TOKEN = SAMPLE_RATE // TOKENS_PER_SECOND
TOKEN_SECONDS = 1 / TOKENS_PER_SECOND
HUBERT_RATE = 16000  # what the HuBERT and speaker-encoder models read
