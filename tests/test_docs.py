"""The README is also the Space's configuration: its front matter must be what Hugging Face expects."""

from __future__ import annotations

import json
import re

from tests.server_process import ROOT


def front_matter() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    block = text[4 : text.index("\n---\n", 4)]
    return dict(line.split(": ", 1) for line in block.splitlines())


def test_space_front_matter() -> None:
    meta = front_matter()
    for key in ("title", "emoji", "colorFrom", "colorTo", "sdk", "app_port", "short_description", "suggested_hardware"):
        assert meta.get(key), f"front matter lacks {key}"
    assert meta["sdk"] == "docker" and meta["app_port"] == "7860" and meta["suggested_hardware"] == "cpu-basic"
    assert len(meta["short_description"]) <= 60  # the Hub's limit


def test_readme_links_resolve() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in (
        "docs/deployment-guide.md",
        "docs/architecture.md",
        ".env.example",
        "models/README.md",
        "bench/results/latest.md",
    ):
        assert f"]({target})" in text and (ROOT / target).is_file()


def test_the_image_copies_everything_the_server_reads() -> None:
    """The image copies code folder by folder: a new folder the server needs must be listed in the Dockerfile."""
    copy_lines = re.findall(r"^COPY ([^-].*) \S+$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)  # from the context
    copied = {source for line in copy_lines for source in line.split()}
    needed = {"server.py", "settings.py", "api/", "engine/", "wavstream/", "playground/", "models/"}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"
    pattern = r"^(?:from|import) (api|engine|wavstream|settings|bench|tests)\b"
    top_level_imports = set(re.findall(pattern, (ROOT / "server.py").read_text(), re.MULTILINE))
    assert {f"{name}.py" if (ROOT / f"{name}.py").is_file() else f"{name}/" for name in top_level_imports} <= copied


def quoted_figures() -> dict[str, list[str]]:
    """Each document's figures, written as they must appear, from the committed results (bench/results/latest.json):
    one source for every figure, so the README and the guide cannot drift from it, nor from each other."""
    results = json.loads((ROOT / "bench" / "results" / "latest.json").read_text(encoding="utf-8"))
    memory, cold, levels = results["memory_mb"], results["cold_start_s"], results["concurrency"]
    single = {text: figures for text, figures in results["single"]["ours"].items()}
    genie = results["single"]["genie_server"]
    four = levels["4"]
    return {
        "README.md": [
            f"clause comes after {single['short']['ttfa_s']:.2f} s",
            f"sentence after {single['sentence']['ttfa_s']:.2f} s",
            f"{memory['ours_1_voice']:.0f} MB of memory at its peak",
            f"3 voices\n{memory['ours_3_voices']:.0f} MB, 8 voices {memory['ours_8_voices']:.0f} MB",
            f"first start of one voice: {cold['ours_1_voice']:.1f} s",
            f"a second start {cold['ours_1_voice_cached']:.1f} s",
        ],
        "docs/deployment-guide.md": [
            results["run"]["started_utc"].removesuffix("+00:00") + " UTC",
            f"ours at `{results['machine']['ours_revision']}`",
            f"{memory['ours_1_voice']:.0f} MB at its peak (Genie's own server: {memory['genie_server_1_voice']:.0f} MB)",
            f"3 voices: {memory['ours_3_voices']:.0f} MB, 8 voices: {memory['ours_8_voices']:.0f} MB",
            f"{memory['genie_server_3_voices']:.0f} MB for 3",
            f"{cold['ours_1_voice']:.1f} s for one voice with an empty `CACHE_DIR`",
            f"3 voices: {cold['ours_3_voices']:.1f} s, 8 voices: {cold['ours_8_voices']:.1f} s",
            f"the same `CACHE_DIR` {cold['ours_1_voice_cached']:.1f} s",
            f"{single['short']['ttfa_s']:.2f} s for a clause, {single['sentence']['ttfa_s']:.2f} s for a sentence, "
            f"{single['paragraph']['ttfa_s']:.2f} s for a paragraph",
            f"Genie's own server: {genie['short']['ttfa_s']:.2f} s, {genie['sentence']['ttfa_s']:.2f} s and "
            f"{genie['paragraph']['ttfa_s']:.2f} s",
            f"{single['paragraph']['rtf']:.2f} s of computing per second of audio",
            f"{results['single']['ours_int8']['paragraph']['rtf']:.2f} with `T2S_PRECISION=int8`",
            f"all {four['requests']} requests served correctly",
            f"first audio after {four['p50_ttfa_s']:.2f} s (median) and {four['p95_ttfa_s']:.2f} s (95th percentile)",
            f"the longest gap between audio bytes {four['max_gap_s']:.2f} s",
            # section 9
            f"{levels['1']['throughput_audio_s_per_s']:.2f} with 1 client, {levels['2']['throughput_audio_s_per_s']:.2f} "
            f"with 2, {levels['4']['throughput_audio_s_per_s']:.2f} with 4",
            f"clients waited {four['p50_ttfa_s']:.2f} s (median) and {four['p95_ttfa_s']:.2f} s (95th percentile)",
            f"({memory['ours_1_voice']:.0f} MB)",
            f"with 4 clients {four['p95_ttfa_s']:.2f} s",
        ],
    }


def test_the_figures_quoted_are_the_committed_results() -> None:
    for name, figures in quoted_figures().items():
        text = (ROOT / name).read_text(encoding="utf-8")
        flat = re.sub(r"\s+", " ", text)
        for figure in figures:
            assert re.sub(r"\s+", " ", figure) in flat, f"{name} does not quote {figure!r} (bench/results/latest.json)"


def test_no_figure_is_retyped_differently() -> None:
    """Figures the guide and README once gave in their own words, which disagreed with the results and each other."""
    stale = ["15-20 s", "about 15 s each", "about 10 s for the first voice", "with a V2ProPlus voice:", "3.7 s (95th"]
    for name in ("README.md", "docs/deployment-guide.md"):
        text = (ROOT / name).read_text(encoding="utf-8")
        assert not [phrase for phrase in stale if phrase in text], name
