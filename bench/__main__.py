"""python -m bench [--quick] [--baseline REV] [--without-int8] [--without-languages]: run every contender in one run,
write bench/results/.

Results are never merged across runs: each run writes a complete latest.json/latest.md/plots,
so every ratio compares figures taken on the same machine, minutes apart. Its last step is the languages step
(bench/languages.py); whether our server speaks every language is checked first, so a language it cannot speak
stops the run at its start rather than after the other steps.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

from bench import languages
from bench.report import fmt, markdown, write
from bench.run import FULL, QUICK, run

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark our server against Genie-TTS's own server and direct calls.")
    parser.add_argument("--quick", action="store_true", help="1 repeat instead of 3 interleaved rounds (for development)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: bench/results)")
    parser.add_argument(
        "--baseline",
        metavar="REVISION",
        help="also measure our server at this git revision (e.g. main, HEAD~3), in the same run: a regression check",
    )
    parser.add_argument(
        "--without-int8",
        action="store_true",
        help="leave out the T2S_PRECISION=int8 contender and its fidelity check (its target is then reported as not measured)",
    )
    parser.add_argument(
        "--without-languages",
        action="store_true",
        help="leave out the Chinese, English and Korean step (bench/languages.py; its section then says not measured)",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        default=Path(__file__).resolve().parent.parent / ".cache" / "bench" / "run",
        help="emptied at start; server logs and CACHE_DIRs stay there (default: .cache/bench/run)",
    )
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the progress log
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {message}", flush=True)

    shutil.rmtree(args.scratch, ignore_errors=True)
    args.scratch.mkdir(parents=True)
    voices = None if args.without_languages else languages.prepare(args.scratch, log, mode.timeout_s)
    results = run(mode, args.scratch, log, args.baseline, with_int8=not args.without_int8)
    if voices is None:
        results["not_measured"]["languages"] = "run with --without-languages"
    else:
        results["languages"] = languages.measure(voices, mode, args.scratch, log)
    write(results, args.out)
    print()
    print(markdown(results))
    for target in results["targets"]:
        verdict = "MET " if target["met"] else "MISS"
        print(f"{verdict}  {target['target']}: {fmt(target['measured'])} (limit {fmt(target['limit'])})")
    print(f"\nwrote {args.out / 'latest.md'} in {time.monotonic() - started:.0f} s")
    failed = languages.our_failures(results.get("languages") or {})
    for line in failed:
        print(f"OUR SERVER FAILED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
