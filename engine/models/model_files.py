"""The files a voice's tts_models/ folder and GenieData hold, by name: the one place that spells them.

Genie's converter writes a voice as fp32 graphs whose weights live in fp16 files (expanded to fp32 in memory);
`python -m engine.tools.quantize` adds self-contained int8 T2S decoders beside them (T2S_PRECISION=int8).
"""

from __future__ import annotations

T2S_ENCODER = "t2s_encoder_fp32.onnx"
T2S_ENCODER_WEIGHTS = "t2s_encoder_fp32.bin"  # fp32, read by the graph itself
T2S_WEIGHTS = "t2s_shared_fp16.bin"  # both fp32 decoders read it
VOCODER = "vits_fp32.onnx"
VOCODER_WEIGHTS = "vits_fp16.bin"
PROMPT_ENCODER = "prompt_encoder_fp32.onnx"  # V2ProPlus only
PROMPT_ENCODER_WEIGHTS = "prompt_encoder_fp16.bin"

#: T2S_PRECISION's values.
T2S_PRECISIONS = ("fp32", "int8")
#: Per precision: (first-stage decoder, stage decoder).
T2S_DECODERS = {
    "fp32": ("t2s_first_stage_decoder_fp32.onnx", "t2s_stage_decoder_fp32.onnx"),
    "int8": ("t2s_first_stage_decoder_int8.onnx", "t2s_stage_decoder_int8.onnx"),
}
FIRST_STAGE_DECODER, STAGE_DECODER = T2S_DECODERS["fp32"]

#: Every voice has these; a V2ProPlus voice also the prompt encoder's.
BASE_FILES = (T2S_ENCODER, T2S_ENCODER_WEIGHTS, FIRST_STAGE_DECODER, STAGE_DECODER, T2S_WEIGHTS, VOCODER, VOCODER_WEIGHTS)
PROMPT_ENCODER_FILES = (PROMPT_ENCODER, PROMPT_ENCODER_WEIGHTS)

#: fp32 graphs whose weights are an fp16 file: their external-data offsets count fp32 bytes and name a file that
#: does not exist, so the fp16 file must hold half their span.
FP16_WEIGHTS = {
    FIRST_STAGE_DECODER: T2S_WEIGHTS,
    STAGE_DECODER: T2S_WEIGHTS,
    VOCODER: VOCODER_WEIGHTS,
    PROMPT_ENCODER: PROMPT_ENCODER_WEIGHTS,
}

#: GenieData's models, relative to its folder.
HUBERT = "chinese-hubert-base/chinese-hubert-base.onnx"
HUBERT_WEIGHTS = "chinese-hubert-base/chinese-hubert-base_weights_fp16.bin"
SPEAKER_ENCODER = "speaker_encoder.onnx"
