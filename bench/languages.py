"""python -m bench.languages [--quick]: the benchmark in Chinese, English and Korean, so its figures are not Japanese only.

Per language, that language's demo voice (engine/tools/demo.py: demo-zh, demo-en, demo-ko) speaks the texts of
bench/texts.py's LANGUAGE_TEXTS: our server against Genie-TTS's own server and Genie called directly, each
loaded with the same voice folder and told its language. Genie-TTS has no Korean, so Korean is ours alone.
The rounds are the main run's (bench/run.py): single client, interleaved over every contender of every
language, each contender freshly started per round; medians with the min-max of the rounds. The stand-in
GenieData has no Chinese RoBERTa model, so no contender computes Chinese BERT features (Genie's are optional).

Before any round our server must speak every language's sentence: a voice it cannot speak (Korean, until
engine/text/korean_g2p.py is there) stops the run at once with the server's answer, instead of rows of failures.

`python -m bench` runs this as its last step: latest.md's "Languages" section, the committed figures. Alone,
it writes bench/results/languages.md and .json, for development; they are not committed (bench/results/.gitignore).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.contenders import ROOT, GenieServer, OurServer
from bench.run import FULL, QUICK, DirectRounds, Log, Mode, ServerRounds, interleaved, machine, per_audio_ratio
from bench.targets import ratio
from bench.texts import LANGUAGE_TEXTS, WARMUPS

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Language:
    code: str  # bench/texts.py's key
    voice: str  # the demo voice that speaks it
    genie: str | None  # Genie's name of the language; None: Genie cannot speak it, ours alone


LANGUAGES = (Language("zh", "demo-zh", "Chinese"), Language("en", "demo-en", "English"), Language("ko", "demo-ko", None))


@dataclass(frozen=True)
class Voices:
    """The language voices (name -> folder) and the stand-in GenieData they are spoken with."""

    folders: dict[str, Path]
    genie_data: Path


def prepare(scratch: Path, log: Log, timeout_s: float = FULL.timeout_s) -> Voices:
    """Build the language voices (once; next to the main run's demo voice) and check that our server speaks each."""
    from engine.tools.demo import ensure_demo_voices  # noqa: PLC0415  (as bench/run.py builds its voice)
    from engine.voices.demo_voices import BUILD_VERSION

    folders, genie_data = ensure_demo_voices(ROOT / ".cache" / "bench" / f"demo-{BUILD_VERSION}", [x.voice for x in LANGUAGES])
    voices = Voices(folders, genie_data)
    require_speech(voices, scratch, timeout_s)
    log(f"languages: our server speaks {', '.join(x.code for x in LANGUAGES)}")
    return voices


def require_speech(voices: Voices, scratch: Path, timeout_s: float) -> None:
    """Our server, with every language voice, speaks each language's sentence; RuntimeError naming each that it cannot."""
    models = scratch / "models-languages"
    models.mkdir(parents=True, exist_ok=True)
    for name, folder in voices.folders.items():
        if not (models / name).exists():
            (models / name).symlink_to(folder, target_is_directory=True)
    first = LANGUAGES[0].voice
    contender = OurServer(voices.folders[first], voices.genie_data, scratch, name="ours_languages_check", voice=first)
    running = contender.start(voices=1, settings={"MODELS_DIR": str(models)})
    problems = []
    try:
        for language in LANGUAGES:
            url, payload = contender.request(running, LANGUAGE_TEXTS[language.code]["sentence"], language.voice)
            try:
                response = httpx.post(url, json=payload, timeout=timeout_s)
            except httpx.HTTPError as error:
                problems.append(f"{language.voice}: {type(error).__name__}: {error}")
                continue
            if response.status_code != 200 or len(response.content) <= contender.header_bytes:
                told = [line for line in running.log().splitlines() if language.voice in line][-3:]
                answer = response.text[:500] if response.status_code != 200 else "no audio"
                problems.append(
                    f"{language.voice}: HTTP {response.status_code}: {answer}" + "".join(f"\n    log: {x}" for x in told)
                )
    finally:
        running.stop()
    if problems:
        raise RuntimeError(
            f"our server cannot speak every language of the benchmark (server log {running.log_path}):\n  "
            + "\n  ".join(problems)
        )


Rounds = ServerRounds | DirectRounds


def contenders(voices: Voices, mode: Mode, scratch: Path) -> dict[str, dict[str, Rounds]]:
    """{language code: {contender: its rounds}}: ours for every language, Genie's two where Genie speaks it."""
    plan: dict[str, dict[str, Rounds]] = {}
    for language in LANGUAGES:
        code, voice, folder = language.code, language.voice, voices.folders[language.voice]
        texts, warmup = LANGUAGE_TEXTS[code], WARMUPS[code]
        ours = OurServer(folder, voices.genie_data, scratch, name=f"ours_{code}", voice=voice)
        plan[code] = {"ours": ServerRounds(ours, texts, mode, scratch, cached=False, warmup=warmup)}
        if language.genie is not None:
            genie = GenieServer(
                folder, voices.genie_data, scratch, name=f"genie_server_{code}", voice=voice, language=language.genie
            )
            plan[code]["genie_server"] = ServerRounds(genie, texts, mode, scratch, cached=False, warmup=warmup)
            plan[code]["genie_direct"] = DirectRounds(
                folder, voices.genie_data, scratch, texts, language.genie, name=f"genie_direct_{code}", warmup=warmup
            )
    return plan


def measure(voices: Voices, mode: Mode, scratch: Path, log: Log) -> dict[str, object]:
    """Every language's rounds, interleaved over all contenders of all languages; the "languages" section of the results."""
    plan = contenders(voices, mode, scratch)
    rounds = {f"{code} {name}": found for code, group in plan.items() for name, found in group.items()}
    for repeat, key in interleaved(list(rounds), mode.repeats):
        rounds[key](repeat, log)
    section: dict[str, object] = {"repeats": mode.repeats, "rounds": list(rounds), "texts": LANGUAGE_TEXTS}
    for language in LANGUAGES:
        single = {name: found.summary() for name, found in plan[language.code].items()}
        section[language.code] = {
            "voice": language.voice,
            "genie_language": language.genie,
            "single": single,
            "ratios": ratios(single),
        }
    return section


def ratios(single: dict[str, dict]) -> dict[str, dict[str, float | None]]:
    """Per text: our TTFA over Genie server's, and our time per audio second over Genie direct's (None without Genie)."""
    genie, direct = single.get("genie_server", {}), single.get("genie_direct", {})
    return {
        text: {
            "ttfa_ours_over_genie_server": ratio(row["ttfa_s"], genie.get(text, {}).get("ttfa_s")),
            "per_audio_s_ours_over_genie_direct": per_audio_ratio(row, direct[text]) if text in direct else None,
        }
        for text, row in single["ours"].items()
    }


def our_failures(section: dict[str, object]) -> list[str]:
    """ "zh sentence: 1 of 3 requests failed" for each text our server did not serve every time."""
    found = []
    for language in LANGUAGES:
        entry = section.get(language.code)
        for text, row in entry["single"]["ours"].items() if isinstance(entry, dict) else ():
            if row["failures"]:
                found.append(f"{language.code} {text}: {row['failures']} of {row['n']} requests failed")
    return found


def main(argv: list[str] | None = None) -> int:
    from bench.report import languages_markdown  # noqa: PLC0415  (report imports nothing of the run; keep it that way)

    parser = argparse.ArgumentParser(description="The benchmark's languages step alone (Chinese, English, Korean).")
    parser.add_argument("--quick", action="store_true", help="1 round instead of 3 (for development)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: bench/results)")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=ROOT / ".cache" / "bench" / "languages",
        help="emptied at start; server logs and CACHE_DIRs stay there (default: .cache/bench/languages)",
    )
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    logging.getLogger("httpx").setLevel(logging.WARNING)
    started, began = time.monotonic(), datetime.datetime.now(datetime.UTC)

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {message}", flush=True)

    shutil.rmtree(args.scratch, ignore_errors=True)
    args.scratch.mkdir(parents=True)
    section = measure(prepare(args.scratch, log, mode.timeout_s), mode, args.scratch, log)
    results = {
        "run": {"mode": mode.name, "started_utc": began.isoformat(timespec="seconds"), "repeats": mode.repeats},
        "machine": machine(),
        "languages": section,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "languages.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    page = languages_markdown(results)
    (args.out / "languages.md").write_text(page, encoding="utf-8")
    print(f"\n{page}\nwrote {args.out / 'languages.md'} in {time.monotonic() - started:.0f} s")
    failed = our_failures(section)
    for line in failed:
        print(f"OUR SERVER FAILED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
