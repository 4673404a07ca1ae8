"""Before serving: GenieData found (or downloaded), Genie imported, the demo voice built if asked, voice folders checked.

Runs in the process's main thread before the server starts; loading the voices themselves happens later, in
the application's start-up (engine/voices/registry.py), while /health answers "loading".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from engine.genie import import_genie, missing_data
from engine.models.genie_data import instructions, resolve_genie_data
from engine.voices import demo_voices
from engine.voices.demo_voices import DEMO_VOICES
from engine.voices.voice_folder import VoiceError, VoiceFolder, inspect_voice, scan, verdict

logger = logging.getLogger("gsv.startup")

#: (folder name, the checked folder or the reason it cannot be served), sorted by name.
FoundVoices = list[tuple[str, VoiceFolder | VoiceError]]


def find_voices(
    models_dir: Path,
    genie_data_dir: Path,
    allow_download: bool,
    with_demo: bool,
    cache_dir: Path,
    t2s_precision: str = "fp32",
    demo_names: Sequence[str] = tuple(DEMO_VOICES),
) -> tuple[Path, FoundVoices]:
    """The GenieData folder Genie was imported with, and every voice folder to load.

    With `with_demo`, the generated demo voices named in `demo_names` are added (built once into `cache_dir`, with
    int8 decoders under T2S_PRECISION=int8); without real GenieData they bring their own stand-in, so the server
    runs offline.
    """
    if not with_demo:
        genie_data_dir = resolve_genie_data(genie_data_dir, allow_download)
        import_genie(genie_data_dir)
        return genie_data_dir, scan(models_dir, genie_data_dir)

    root = demo_voices.build_root(cache_dir)
    real_data_dir, stand_in = genie_data_dir, bool(missing_data(genie_data_dir))
    known = [name for name in demo_names if name in DEMO_VOICES]
    demo_folders: FoundVoices = [
        (name, VoiceError(f"no such demo voice (DEMO_VOICES); the demo voices are {', '.join(DEMO_VOICES)}"))
        for name in demo_names
        if name not in DEMO_VOICES
    ]
    # Built in a child process; the length rule is read with the real G2P when the server has it.
    int8 = t2s_precision == "int8"
    voice_dirs, stand_in_dir = demo_voices.ensure_demo_voices(root, known, int8, None if stand_in else real_data_dir)
    if stand_in:
        genie_data_dir = stand_in_dir
    import_genie(genie_data_dir)
    for name, voice_dir in voice_dirs.items():
        logger.warning("voice '%s' comes from %s: random weights, it produces noise, not speech", name, voice_dir)
        try:
            demo_folders.append((name, inspect_voice(voice_dir, genie_data_dir)))
        except VoiceError as error:
            demo_folders.append((name, error))
    folders = [entry for entry in scan(models_dir, genie_data_dir) if entry[0] not in voice_dirs]
    if stand_in:  # its random HuBERT and speaker encoder would make a real voice speak noise
        refusal = VoiceError(
            f"GenieData is missing at {real_data_dir}; only the generated demo voices ({', '.join(voice_dirs)}) run, "
            f"on stand-in GenieData. "
            f"{instructions(real_data_dir)}"
        )
        folders = [(name, refusal if isinstance(folder, VoiceFolder) else folder) for name, folder in folders]
    return genie_data_dir, [*folders, *demo_folders]


def check_voices(models_dir: Path, genie_data_dir: Path, allow_download: bool) -> tuple[list[str], bool]:
    """`server.py --check`: a line for GenieData and one per voice folder, and whether every voice can be served.

    Missing GenieData is an error unless the server may download it (GENIE_DOWNLOAD=1): then a warning that
    says so, since the first start will fetch it.
    """
    absent = missing_data(genie_data_dir)
    if not absent:
        lines = [f"OK   GenieData {genie_data_dir}"]
    elif allow_download:
        lines = [f"WARN GenieData {genie_data_dir}: missing {', '.join(absent)}; the server will download it at start"]
    else:
        lines = [
            f"ERROR GenieData {genie_data_dir}: missing {', '.join(absent)} and GENIE_DOWNLOAD=0. {instructions(genie_data_dir)}"
        ]
    entries = scan(models_dir, genie_data_dir)
    if not entries:
        return [*lines, f"ERROR no voice folders in {models_dir}"], False
    for name, folder in entries:
        lines.append(f"ERROR {name}: {folder}" if isinstance(folder, VoiceError) else verdict(folder))
    servable = not any(isinstance(folder, VoiceError) for _, folder in entries)
    return lines, servable and (not absent or allow_download)
