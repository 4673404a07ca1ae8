"""Finding (and if allowed, downloading) GenieData before `genie_tts` is imported."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from engine.genie import GenieDataMissing, missing_data
from engine.models.hub import HF_REPO, HF_REVISION, fetch_folder

HF_FOLDER = "GenieData"
logger = logging.getLogger("gsv.genie_data")


def instructions(target: Path) -> str:
    """What to run to put GenieData at `target`: the download lands in place, nothing to move afterwards."""
    place = f"--local-dir {target.parent}"
    if target.name != HF_FOLDER:
        place += f" and rename {target.parent / HF_FOLDER} to {target}"
    return (
        f"GenieData (about 391 MB) is needed at {target}. Download the folder '{HF_FOLDER}/' of the Hugging Face "
        f"model repo {HF_REPO} at revision {HF_REVISION}: "
        f"`hf download {HF_REPO} --revision {HF_REVISION} --include '{HF_FOLDER}/*' {place}`, "
        f"or point GENIE_DATA_DIR at an existing copy. Offline, `python server.py --demo` serves only the generated "
        f"demo voices, on stand-in data (`python -m engine.tools.demo DIR` builds both)."
    )


def download(target: Path) -> None:
    """Fetch GenieData/ from the hub into `target` (progress bars from huggingface_hub)."""
    staging = target.parent / f".{target.name}.download"
    logger.info("genie_data=downloading repo=%s revision=%s target=%s", HF_REPO, HF_REVISION, target)
    try:
        fetched = fetch_folder(HF_FOLDER, staging)
    except Exception as error:  # network, auth and hub errors all mean the same thing to the user
        raise GenieDataMissing(
            f"downloading GenieData failed ({type(error).__name__}: {error}). {instructions(target)}"
        ) from None
    if missing_data(fetched):
        raise GenieDataMissing(f"the download lacks {', '.join(missing_data(fetched))}. {instructions(target)}")
    if target.exists():
        shutil.rmtree(target)
    fetched.rename(target)
    shutil.rmtree(staging, ignore_errors=True)


def resolve_genie_data(target: Path, allow_download: bool) -> Path:
    """Return a GenieData folder Genie can import with, downloading it once if needed."""
    if not missing_data(target):
        return target
    if not allow_download:
        raise GenieDataMissing(f"GenieData is missing at {target} and GENIE_DOWNLOAD=0. {instructions(target)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    download(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.models.genie_data DIR`: fetch GenieData into DIR ahead of time (the Dockerfile does so at build time)."""
    parser = argparse.ArgumentParser(description="Download GenieData into DIR, as the server does when it is missing.")
    parser.add_argument("dir", type=Path, help="the folder GENIE_DATA_DIR will name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    try:
        target = resolve_genie_data(args.dir, allow_download=True)
    except GenieDataMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"GenieData ready at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
