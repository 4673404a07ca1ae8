"""python -m bench.fidelity [--voice DIR --genie-data DIR]: what int8 T2S decoders change, measured against fp32.

Both precisions run the deterministic copy of the voice (engine/tools/deterministic.py: greedy decoding), on
the bench texts cut into segments as the server cuts them (bench/texts.py, engine/text/segmenter.py):

* top-1 agreement: the int8 decoders are fed the fp32 token sequence (teacher forcing) and, at every step,
  their greedy choice is compared with fp32's; the figure is the fraction of steps that agree;
* sequence agreement: the fraction of segments whose free-running greedy int8 sequence (tokens and stop)
  equals fp32's;
* per-step decode time of each precision, measured in the same run with the segments interleaved (fp32 first
  on one segment, int8 first on the next), median over all stage-decoder steps.

Without arguments it measures the demo voice (random weights: its figures are a stand-in, not a verdict on a
trained voice). On your own voice: `python -m engine.tools.quantize models/<voice>` first, then
`python -m bench.fidelity --voice models/<voice> --genie-data GenieData --out my-results`.
Writes int8.json and int8.md to --out (default bench/results/).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from bench.texts import CONCURRENT, TEXTS

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
EOS_TOKEN = 1024


LOGITS = "/ar_predict_layer/MatMul_output_0"
#: The decoders' repetition penalty (in the graphs): a seen token's logit is divided by it (multiplied when negative).
REPETITION_PENALTY = 1.35


@dataclasses.dataclass
class Decoders:
    first: onnxruntime.InferenceSession
    stage: onnxruntime.InferenceSession

    @property
    def names(self) -> list[str]:
        return [item.name for item in self.stage.get_inputs()]

    def start(self, x: np.ndarray, prompts: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """(y, [y_emb, *cache], logits) of the first stage."""
        y, *state = self.first.run(None, {"x": x, "prompts": prompts})
        return y, state[: len(self.names) - 1], state[-1]

    def step(self, y: np.ndarray, state: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray], bool, np.ndarray]:
        """(y, [y_emb, *cache], stop, logits) of one stage step."""
        y, y_emb, stop, *rest = self.stage.run(None, dict(zip(self.names, [y, *state], strict=True)))
        return y, [y_emb, *rest[: len(self.names) - 2]], bool(stop), rest[-1]


@dataclasses.dataclass
class Decoded:
    tokens: list[int]  # generated tokens, the stopping one included
    step_seconds: list[float]  # one per stage-decoder run


def expose_logits(graph: Path) -> None:
    """Add the output projection's logits as the graph's last output (a scratch copy, never a served file)."""
    model = onnx.load(graph, load_external_data=False)
    model.graph.output.append(onnx.helper.make_tensor_value_info(LOGITS, onnx.TensorProto.FLOAT, None))
    onnx.save(model, graph)


def greedy(decoders: Decoders, x: np.ndarray, prompts: np.ndarray, cap: int) -> Decoded:
    """Free-running decoding with the (greedy) graphs, the way our loop runs them, timing each step."""
    y, state, _ = decoders.start(x, prompts)
    times = []
    while y.shape[1] - prompts.shape[1] < cap:
        started = time.perf_counter()
        y, state, stop, _ = decoders.step(y, state)
        times.append(time.perf_counter() - started)
        if stop:
            break
    return Decoded([int(token) for token in y[0, prompts.shape[1] :]], times)


def teacher_forced(
    decoders: Decoders, x: np.ndarray, prompts: np.ndarray, forced: list[int]
) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """The decoders' greedy choice at every step when fed `forced` (another precision's sequence) as history,
    with the logits of each step and the history they were penalised with."""
    y, state, logits = decoders.start(x, prompts)
    choices, all_logits, histories = [int(y[0, -1])], [logits.reshape(-1)], [prompts[0].copy()]
    for token in forced[:-1]:
        y[0, -1] = token  # the history is the reference sequence, not our own choice
        histories.append(y[0].copy())
        y, state, _, logits = decoders.step(y, state)
        choices.append(int(y[0, -1]))
        all_logits.append(logits.reshape(-1))
    return choices, all_logits, histories


def penalised_margin(logits: np.ndarray, history: np.ndarray) -> float:
    """fp32's lead of its choice over the runner-up, after the repetition penalty the graph applies."""
    penalised = logits.astype(np.float64).copy()
    seen = np.unique(history)
    penalised[seen] = np.where(penalised[seen] < 0, penalised[seen] * REPETITION_PENALTY, penalised[seen] / REPETITION_PENALTY)
    top = np.sort(penalised)[-2:]
    return float(top[1] - top[0])


def bench_segments() -> list[str]:
    """Every bench text cut as the server cuts it (default segment budgets), then the concurrent sentences."""
    from engine.text.segmenter import segment  # noqa: PLC0415
    from settings import Settings  # noqa: PLC0415

    defaults = Settings()
    pieces = [piece for text in TEXTS.values() for piece in segment(text, defaults.first_segment_chars, defaults.segment_chars)]
    return [*pieces, *CONCURRENT]


def measure(voice_dir: Path, genie_data_dir: Path, threads: int = 2, log: Callable[[str], None] = print) -> dict:
    """Both precisions on the deterministic copy of `voice_dir`; the figures and the per-segment detail."""
    from engine import genie  # noqa: PLC0415
    from engine.models.sessions import in_memory_session  # noqa: PLC0415
    from engine.models.t2s_precision import decoder_files  # noqa: PLC0415
    from engine.synthesis.decoding import encode  # noqa: PLC0415
    from engine.synthesis.vocoding import token_cap  # noqa: PLC0415
    from engine.text.g2p import text_to_phonemes  # noqa: PLC0415
    from engine.tools.deterministic import DECODER_FILES, deterministic_voice  # noqa: PLC0415
    from engine.voices.voice import SharedModels, load_voice  # noqa: PLC0415
    from engine.voices.voice_folder import inspect_voice  # noqa: PLC0415

    genie.import_genie(genie_data_dir)
    with tempfile.TemporaryDirectory(prefix="fidelity-") as scratch:
        folder = inspect_voice(deterministic_voice(voice_dir, Path(scratch)), genie_data_dir)
        decoder_files(folder.models, "int8")  # a clear error, before minutes of loading, when they are missing
        for name in DECODER_FILES:
            if (folder.models / name).exists():
                expose_logits(folder.models / name)
        log(f"loading {voice_dir} (fp32 and int8 decoders)")
        voice = load_voice(folder, SharedModels.load(genie_data_dir, threads), threads)
        # Genie's form of the stage decoder, as the int8 one: the served fp32 graph attends through an in-place
        # cache (engine/models/decoder_graph.py), which would make the step times compare two changes at once.
        stage_fp32 = in_memory_session(
            folder.models / "t2s_stage_decoder_fp32.onnx", folder.models / "t2s_shared_fp16.bin", threads
        )
        fp32 = Decoders(voice.first_stage_decoder, stage_fp32)
        first, stage, _ = decoder_files(folder.models, "int8")
        int8 = Decoders(in_memory_session(first, None, threads), in_memory_session(stage, None, threads))

        segments, steps, margins, errors = [], {"fp32": [], "int8": []}, [], []
        for index, text in enumerate(bench_segments()):
            phonemes = text_to_phonemes(text, voice.language)
            reference = voice.reference
            x, prompts = encode(voice, phonemes, reference)
            cap = token_cap(phonemes.count)
            order = [("fp32", fp32), ("int8", int8)] if index % 2 == 0 else [("int8", int8), ("fp32", fp32)]
            decoded = {name: greedy(decoders, x, prompts, cap) for name, decoders in order}
            for name in steps:
                steps[name].extend(decoded[name].step_seconds)
            reference_tokens = decoded["fp32"].tokens
            own, fp32_logits, histories = teacher_forced(fp32, x, prompts, reference_tokens)
            if own != reference_tokens:  # the method's own check: fp32 fed its own sequence repeats it
                raise RuntimeError(f"teacher forcing does not reproduce fp32's sequence for {text!r}")
            forced, int8_logits, _ = teacher_forced(int8, x, prompts, reference_tokens)
            agree = sum(a == b for a, b in zip(forced, reference_tokens, strict=True))
            for a, b, history in zip(fp32_logits, int8_logits, histories, strict=True):
                margins.append(penalised_margin(a, history))
                errors.append(float(np.abs(a - b).max()))
            segments.append(
                {
                    "text": text,
                    "phonemes": phonemes.count,
                    "fp32_tokens": len(reference_tokens),
                    "int8_tokens": len(decoded["int8"].tokens),
                    "steps_agreeing": agree,
                    "sequence_equal": decoded["int8"].tokens == reference_tokens,
                    "distinct_fp32_tokens": len(set(reference_tokens)),
                }
            )
            log(f"segment {index}: {segments[-1]}")

    steps_total = sum(item["fp32_tokens"] for item in segments)
    summary = {
        "top1_agreement": sum(item["steps_agreeing"] for item in segments) / steps_total,
        "sequence_agreement": sum(item["sequence_equal"] for item in segments) / len(segments),
        "step_ms_fp32": 1000 * statistics.median(steps["fp32"]),
        "step_ms_int8": 1000 * statistics.median(steps["int8"]),
    }
    decisive = [margin > 2 * error for margin, error in zip(margins, errors, strict=True)]
    logits = {
        "fp32_margin_median": statistics.median(margins),
        "int8_error_median": statistics.median(errors),
        "decisive_steps": sum(decisive) / len(decisive),
    }
    return {
        "summary": summary,
        "logits": logits,
        "segments": segments,
        "steps_timed": {name: len(value) for name, value in steps.items()},
    }


def int8_figures(voice_dir: Path, genie_data_dir: Path, threads: int = 2) -> dict[str, float]:
    """{"top1_agreement", "sequence_agreement", "step_ms_fp32", "step_ms_int8"} for bench/results/latest.json."""
    return measure(voice_dir, genie_data_dir, threads, log=lambda _: None)["summary"]


def demo_voice() -> tuple[Path, Path]:
    """The bench's demo voice (random weights), with its int8 decoders."""
    from engine.tools.demo import ensure_demo  # noqa: PLC0415
    from engine.voices.demo_voices import BUILD_VERSION

    return ensure_demo(ROOT / ".cache" / "bench" / f"demo-{BUILD_VERSION}", int8=True)


def markdown(result: dict) -> str:
    summary, machine = result["summary"], result["machine"]
    caveat = " (random weights: a stand-in, not a verdict on a trained voice)" if result["demo"] else ""
    lines = [
        "# int8 T2S decoders against fp32",
        "",
        f"Voice: `{result['voice']}`{caveat}; "
        f"greedy decoding (engine/tools/deterministic.py); {len(result['segments'])} segments of the bench texts; "
        f"{machine['cores']} cores, onnxruntime {machine['onnxruntime']}, {result['threads']} threads.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| top-1 agreement per step (int8 fed fp32's sequence) | {summary['top1_agreement']:.4f} |",
        f"| token-sequence agreement (identical greedy sequences) | {summary['sequence_agreement']:.4f} |",
        f"| stage-decoder step, fp32 (median, ms) | {summary['step_ms_fp32']:.1f} |",
        f"| stage-decoder step, int8 (median, ms) | {summary['step_ms_int8']:.1f} |",
        f"| int8 / fp32 step time | {summary['step_ms_int8'] / summary['step_ms_fp32']:.2f} |",
        "",
        "Why: at each step, fp32's chosen token leads the runner-up (after the repetition penalty) by a median of "
        f"{result['logits']['fp32_margin_median']:.2g}, while int8 moves the logits by a median of "
        f"{result['logits']['int8_error_median']:.2g} (largest change per step); the lead is more than twice the change "
        f"on {result['logits']['decisive_steps']:.1%} of the steps. Where the lead is smaller than the change, "
        "rounding alone can flip the choice.",
        "",
        "| segment | phonemes | fp32 tokens | int8 tokens | steps agreeing | same sequence | distinct fp32 tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in result["segments"]:
        lines.append(
            f"| {item['text']} | {item['phonemes']} | {item['fp32_tokens']} | {item['int8_tokens']} | "
            f"{item['steps_agreeing']} | {'yes' if item['sequence_equal'] else 'no'} | {item['distinct_fp32_tokens']} |"
        )
    lines += [
        "",
        "Distinct fp32 tokens: a random-weight voice repeats a few tokens under greedy decoding, which makes agreement",
        "easier than on a trained voice. Measure yours:",
        "`python -m bench.fidelity --voice models/<voice> --genie-data GenieData`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="int8 against fp32 T2S decoders: agreement and step time, greedy decoding.")
    parser.add_argument("--voice", type=Path, help="a voice folder with int8 decoders (default: the demo voice)")
    parser.add_argument("--genie-data", type=Path, help="its GenieData folder (default: the demo's stand-in)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads per session (ORT_THREADS)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for int8.json and int8.md (default: bench/results)")
    args = parser.parse_args(argv)
    if (args.voice is None) != (args.genie_data is None):
        parser.error("--voice and --genie-data go together")
    demo = args.voice is None
    voice_dir, genie_data_dir = demo_voice() if demo else (args.voice, args.genie_data)
    started = time.monotonic()
    result = measure(voice_dir, genie_data_dir, args.threads, log=lambda line: print(line, flush=True))

    result = {
        "voice": "demo" if demo else voice_dir.name,
        "demo": demo,
        "threads": args.threads,
        "machine": {"cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__},
        **result,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "int8.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (args.out / "int8.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    print(f"wrote {args.out / 'int8.json'} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
