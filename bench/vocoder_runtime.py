"""python -m bench.vocoder_runtime: the demo voice's vocoder (VITS) on onnxruntime against OpenVINO.

Both run the same fp32 graph (the voice's fp16 weights expanded as engine/voices/voice.py loads them, saved after
onnxruntime's basic, standard-ops-only optimisation) on the same input, 2 threads each, in interleaved
repeats; medians are compared. The graph's one RandomNormalLike (the VITS noise) is replaced by zeros in a
scratch copy, so both runtimes must produce the same audio. Decision rule (issue 13): adopt OpenVINO only if
it is at least 1.3x faster and its output equals onnxruntime's within TOLERANCE.

Writes bench/results/vocoder_runtime.json and .md. Needs `openvino` (requirements-bench.txt).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from importlib.metadata import distribution, version
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import helper, numpy_helper

from bench.texts import SENTENCE
from engine import genie
from engine.models.sessions import PROVIDERS, in_memory_session, session_options
from engine.text.g2p import text_to_phonemes
from engine.voices.voice import SharedModels, compute_reference
from engine.voices.voice_folder import inspect_voice

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
THREADS = 2
#: Largest allowed |difference| between the two runtimes' samples, relative to the loudest sample (-60 dB):
#: relative, since the demo voice's random weights make quiet audio. fp32 kernels that only sum in another
#: order differ by far less.
TOLERANCE = 1e-3
SPEEDUP_TO_ADOPT = 1.3
TOKENS_PER_PHONEME = 2  # the demo voice's length rule: a realistic amount of audio for the text


def expanded_graph(models: Path, target: Path) -> Path:
    """The voice's vocoder with its fp16 weights expanded to fp32, after ORT's basic optimisation (constant
    folding and clean-ups in standard ONNX ops only, so another runtime can read it), saved to `target`."""
    options = session_options(THREADS)
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    genie.load_fp16_session(models / "vits_fp32.onnx", models / "vits_fp16.bin", PROVIDERS, options)
    return target


def without_noise(source: Path, target: Path) -> Path:
    """A copy of the graph whose single RandomNormalLike yields zeros of the same shape: deterministic output."""
    model = onnx.load(str(source))
    random = [node for node in model.graph.node if node.op_type == "RandomNormalLike"]
    if len(random) != 1:
        raise RuntimeError(f"expected one RandomNormalLike in the vocoder, found {len(random)}")
    node = random[0]
    index = list(model.graph.node).index(node)
    shape = f"{node.output[0]}__shape"
    zero = numpy_helper.from_array(np.zeros(1, dtype=np.float32), name="value")
    replacement = [
        helper.make_node("Shape", [node.input[0]], [shape], name=f"{node.name}__shape"),
        helper.make_node("ConstantOfShape", [shape], [node.output[0]], name=f"{node.name}__zeros", value=zero),
    ]
    del model.graph.node[index]
    for offset, new in enumerate(replacement):
        model.graph.node.insert(index + offset, new)
    onnx.save(model, str(target))
    return target


def vocoder_input(voice_dir: Path, genie_data: Path) -> dict[str, np.ndarray]:
    """What the engine feeds the vocoder for the bench sentence: its phonemes, the reference's speaker
    features, and seeded semantic tokens as many as the demo voice would decode."""
    folder = inspect_voice(voice_dir, genie_data)
    models = folder.models
    prompt_encoder = None
    if folder.kind == "V2ProPlus":
        prompt_encoder = in_memory_session(models / "prompt_encoder_fp32.onnx", models / "prompt_encoder_fp16.bin", THREADS)
    reference = compute_reference(folder.reference, SharedModels.load(genie_data, THREADS), prompt_encoder)
    phonemes = text_to_phonemes(SENTENCE, folder.language)
    tokens = np.random.default_rng(0).integers(0, 1024, size=(1, 1, TOKENS_PER_PHONEME * phonemes.count), dtype=np.int64)
    if prompt_encoder is None:
        return {"text_seq": phonemes.sequence, "pred_semantic": tokens, "ref_audio": reference.audio_32k}
    return {"text_seq": phonemes.sequence, "pred_semantic": tokens, "ge": reference.ge, "ge_advanced": reference.ge_advanced}


def installed_mb(name: str) -> float:
    """The installed size of a package: its top-level folders and files in site-packages, as `du` counts them."""
    dist = distribution(name)
    tops = {Path(str(file)).parts[0] for file in dist.files or [] if not str(file).startswith("..")}
    base = Path(str(dist.locate_file("")))
    total = 0
    for top in tops:
        path = base / top
        paths = [path] if path.is_file() else [Path(folder) / file for folder, _, files in os.walk(path) for file in files]
        total += sum(p.lstat().st_blocks * 512 for p in paths)
    return total / 2**20


def measure(voice_dir: Path, genie_data: Path, scratch: Path, repeats: int) -> dict[str, object]:
    import openvino  # noqa: PLC0415  (requirements-bench.txt only: the server does not need it)

    scratch.mkdir(parents=True, exist_ok=True)
    expanded = expanded_graph(voice_dir / "tts_models", scratch / "vits_fp32_basic.onnx")
    graph = without_noise(expanded, scratch / "vits_zero_noise.onnx")
    feed = vocoder_input(voice_dir, genie_data)

    ort = onnxruntime.InferenceSession(str(graph), session_options(THREADS), providers=PROVIDERS)
    config = {"INFERENCE_NUM_THREADS": THREADS, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    compiled = openvino.Core().compile_model(str(graph), "CPU", config)
    request = compiled.create_infer_request()

    def run_ort() -> np.ndarray:
        return np.asarray(ort.run(None, feed)[0], dtype=np.float32).reshape(-1)

    def run_openvino() -> np.ndarray:
        return np.asarray(request.infer(feed)[compiled.output(0)], dtype=np.float32).reshape(-1)

    runtimes = {"onnxruntime": run_ort, "openvino": run_openvino}
    outputs = {name: run() for name, run in runtimes.items()}  # warm-up, and the outputs compared
    if outputs["onnxruntime"].shape != outputs["openvino"].shape:
        raise RuntimeError(f"output shapes differ: {outputs['onnxruntime'].shape} vs {outputs['openvino'].shape}")
    difference = float(np.max(np.abs(outputs["onnxruntime"] - outputs["openvino"])))
    times: dict[str, list[float]] = {name: [] for name in runtimes}
    load_before = os.getloadavg()[0]
    for _ in range(repeats):
        for name, run in runtimes.items():  # interleaved: drift of a shared machine hits both alike
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(found) for name, found in times.items()}
    audio_s = outputs["onnxruntime"].size / 32000
    speedup = medians["onnxruntime"] / medians["openvino"]
    peak = float(np.max(np.abs(outputs["onnxruntime"])))
    equal = difference <= TOLERANCE * peak
    return {
        "when_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {"onnxruntime": version("onnxruntime"), "openvino": version("openvino")},
        "graph": "demo voice vits, fp16 weights expanded to fp32, ORT basic optimisation, RandomNormalLike -> zeros",
        "threads": THREADS,
        "cores": os.cpu_count(),
        "load_average_1min": [load_before, os.getloadavg()[0]],  # before and after the timed repeats: others' work
        "input": {key: list(value.shape) for key, value in feed.items()},
        "audio_s": audio_s,
        "repeats": repeats,
        "seconds": times,
        "median_s": medians,
        "spread_s": {name: [min(found), max(found)] for name, found in times.items()},
        "s_per_audio_s": {name: value / audio_s for name, value in medians.items()},
        "speedup_openvino": speedup,
        "max_abs_difference": difference,
        "peak_abs_sample": peak,
        "tolerance_relative_to_peak": TOLERANCE,
        "equal_within_tolerance": equal,
        "openvino_installed_mb": installed_mb("openvino"),
        "adopt": speedup >= SPEEDUP_TO_ADOPT and equal,
    }


def markdown(result: dict) -> str:
    medians, spreads, per_audio = result["median_s"], result["spread_s"], result["s_per_audio_s"]
    lines = [
        "# Vocoder runtime: onnxruntime against OpenVINO",
        "",
        f"Run {result['when_utc']}: {result['graph']}; {result['threads']} threads each, the same input "
        f"({result['audio_s']:.2f} s of audio), {result['repeats']} interleaved repeats, medians (min–max).",
        f"The machine's 1-minute load average was {result['load_average_1min'][0]:.1f} before the timed repeats and "
        f"{result['load_average_1min'][1]:.1f} after (on {result['cores']} cores): a higher load slows both runtimes.",
        f"onnxruntime {result['versions']['onnxruntime']}, openvino {result['versions']['openvino']} "
        "(CPU plugin, f32 inference precision).",
        "",
        "| runtime | median s | min–max s | s per audio s |",
        "|---|---|---|---|",
    ]
    for name in medians:
        low, high = spreads[name]
        lines.append(f"| {name} | {medians[name]:.3f} | {low:.3f}–{high:.3f} | {per_audio[name]:.3f} |")
    lines += [
        "",
        f"- OpenVINO speed-up: {result['speedup_openvino']:.2f}x (adopt only at >= {SPEEDUP_TO_ADOPT}x).",
        f"- Largest sample difference: {result['max_abs_difference']:.2e}, against a tolerance of "
        f"{result['tolerance_relative_to_peak']:.0e} x the largest sample ({result['peak_abs_sample']:.3g}): "
        f"{'equal' if result['equal_within_tolerance'] else 'NOT equal'}.",
        f"- Cost: the openvino wheel installs {result['openvino_installed_mb']:.0f} MB into site-packages.",
        "",
        f"**Decision: {'adopt OpenVINO for the vocoder' if result['adopt'] else 'keep onnxruntime'}.**",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The demo voice's vocoder on onnxruntime vs OpenVINO.")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from engine.tools.demo import ensure_demo  # noqa: PLC0415
    from engine.voices.demo_voices import BUILD_VERSION

    voice_dir, genie_data = ensure_demo(ROOT / ".cache" / "bench" / f"demo-{BUILD_VERSION}")
    genie.import_genie(genie_data)
    result = measure(voice_dir, genie_data, ROOT / ".cache" / "bench" / "vocoder-runtime", args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vocoder_runtime.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out / "vocoder_runtime.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
