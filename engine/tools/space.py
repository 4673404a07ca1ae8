"""Assemble a Hugging Face Space folder: what the Dockerfile copies from the build context, the files that make
the folder a Docker Space, and the voices you name.

Why: a hand-written list of files drifts from the Dockerfile (the guide's list once left out `playground/`, and
the Space's build failed). The list is read from the Dockerfile's own `COPY` lines instead, filtered by
`.dockerignore` as `docker build` would filter it, so what the Space holds is what the image needs.

Run from anywhere (it reads the repository it belongs to):
``python -m engine.tools.space ../my-space --voice models/my-voice [--voice models/other]``.
DEST is a clone of the Space (or a new folder): everything in it but `.git` is replaced, so the Space ends up
holding exactly this code and the voices named; `.gitattributes` keeps its lines and gains the LFS patterns.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from engine.voices.voice_folder import VoiceError, inspect_voice

ROOT = Path(__file__).resolve().parents[2]
#: What makes the folder a Docker Space, besides what the image copies: the build recipe, its context filter,
#: and the README whose front matter configures the Space (sdk, app_port, hardware).
SPACE_FILES = ("Dockerfile", ".dockerignore", "README.md")
#: The Hub refuses binary files pushed as plain git objects: voices go through Git LFS (or Xet).
LFS_PATTERNS = ("*.onnx", "*.bin", "*.wav")
LFS_ATTRIBUTES = "filter=lfs diff=lfs merge=lfs -text"
#: The voices folder: the image copies it whole, but the Space gets only its own files plus the named voices.
MODELS = "models"
KEPT = {".git"}  # never touched in DEST; .gitattributes is merged, not replaced


class SpaceError(Exception):
    """The Space folder cannot be assembled as asked; the message says why and what to do."""


def dockerfile_instructions(text: str) -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, words) per instruction, continuation lines joined and comments dropped."""
    found: list[tuple[str, list[str]]] = []
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not current and not line.strip()):
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        words = current.split()
        found.append((words[0].upper(), words[1:]))
        current = ""
    return found


def context_sources(dockerfile: str) -> list[str]:
    """The paths every COPY/ADD takes from the build context (not from another stage), as written."""
    sources: list[str] = []
    for instruction, words in dockerfile_instructions(dockerfile):
        if instruction not in ("COPY", "ADD"):
            continue
        flags = [word for word in words if word.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        rest = words[len(flags) :]
        paths = (json.loads(" ".join(rest)) if rest and rest[0].startswith("[") else rest)[:-1]
        for path in paths:
            if any(char in path for char in "*?[") or "://" in path:
                raise SpaceError(f"the Dockerfile copies {path!r}: wildcards and URLs are not supported here")
            sources.append(path)
    return sources


def dockerignore_pattern(pattern: str) -> re.Pattern[str]:
    """Docker's matching: `*` and `?` stay within one name, `**/` stands for any number of folders."""
    regex = ""
    for piece in re.split(r"(\*\*/|\*\*|\*|\?)", pattern.strip().strip("/")):
        regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(piece, re.escape(piece))
    return re.compile(regex)


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) per line; `!` lines take a path back in."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((not line.startswith("!"), dockerignore_pattern(line.removeprefix("!"))))
    return rules


def ignored(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Left out of the build context: the path or a folder above it matches; the last matching rule wins."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    result = False
    for excludes, pattern in rules:
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            result = excludes
    return result


def files_under(root: Path, relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> list[str]:
    """Every file at or under `relative` (a path in the build context) that the build context keeps."""
    path = root / relative
    if path.is_file():
        return [] if ignored(relative, rules) else [relative]
    found = []
    for file in sorted(path.rglob("*")):
        name = file.relative_to(root).as_posix()
        if file.is_file() and not ignored(name, rules):
            found.append(name)
    return found


def code_files(root: Path) -> list[str]:
    """What the image takes from the build context, minus the voices in models/ (the Space gets only the named ones)."""
    rules = dockerignore_rules((root / ".dockerignore").read_text(encoding="utf-8"))
    wanted: set[str] = set(SPACE_FILES)
    for source in context_sources((root / "Dockerfile").read_text(encoding="utf-8")):
        relative = source.removeprefix("./").strip("/")
        if not (root / relative).exists():
            raise SpaceError(f"the Dockerfile copies {source}, which {root} lacks")
        if relative == MODELS:
            own_files = (f"{MODELS}/{p.name}" for p in (root / MODELS).iterdir() if p.is_file())
            wanted.update(name for name in own_files if not ignored(name, rules))
        elif relative.startswith(f"{MODELS}/"):
            raise SpaceError(f"the Dockerfile copies {source} from inside {MODELS}/; this tool copies voices only whole")
        else:
            wanted.update(files_under(root, relative, rules))
    return sorted(wanted)


def check_readme(readme: Path) -> None:
    """The README's front matter is the Space's configuration; without `sdk: docker` the Dockerfile is ignored."""
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---\n") or "\n---\n" not in text[4:]:
        raise SpaceError(f"{readme} has no YAML front matter; a Space reads its configuration from it")
    block = text[4 : text.index("\n---\n", 4)]
    if not re.search(r"^sdk: *docker *$", block, re.MULTILINE):
        raise SpaceError(f"{readme}'s front matter lacks 'sdk: docker'")


#: An inline Markdown link: [label](target), the target without spaces (a title after it is not used here).
_LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]+)\)")


def space_readme(text: str, files: set[str]) -> str:
    """The README as the Space shows it: a relative link to a file the Space does not carry (the guide, the
    benchmark results, deploy/) would lead nowhere on the Space's page, so it becomes plain text naming the file in
    the project's repository. Links to the web, to anchors and to files the Space holds stay as they are."""

    def rewrite(match: re.Match[str]) -> str:
        label, target = match.group(1), match.group(2)
        path = target.split("#", 1)[0]
        if not path or "://" in target or target.startswith(("mailto:", "/")) or _carried(path, files):
            return match.group(0)
        if label.strip("`").rstrip("/") in (path, path.rstrip("/"), path.rsplit("/", 1)[0]):
            return f"`{label.strip('`')}` of the project's repository"
        return f"{label}: `{path}` of the project's repository"

    return _LINK.sub(rewrite, text)


def _carried(path: str, files: set[str]) -> bool:
    """Whether a link's path (relative to the README, at the Space's root) is a file or folder the Space holds."""
    path = path.removeprefix("./").rstrip("/")
    return path in files or any(name.startswith(f"{path}/") for name in files)


def voice_files(voice: Path, rules: list[tuple[bool, re.Pattern[str]]]) -> list[tuple[Path, str]]:
    """(source, path in the Space) for each file of a checked voice folder, filtered as the build context is."""
    try:
        inspect_voice(voice)
    except VoiceError as error:
        raise SpaceError(f"voice {voice}: {error}") from None
    found = []
    for file in sorted(voice.rglob("*")):
        target = f"{MODELS}/{voice.name}/{file.relative_to(voice).as_posix()}"
        if file.is_file() and not ignored(target, rules):
            found.append((file, target))
    return found


def merged_gitattributes(existing: str) -> str:
    """The Space's own .gitattributes (the Hub's template has many LFS lines) plus any of ours it lacks."""
    lines = existing.splitlines()
    present = {line.split()[0] for line in lines if "filter=lfs" in line.split()}
    lines += [f"{pattern} {LFS_ATTRIBUTES}" for pattern in LFS_PATTERNS if pattern not in present]
    return "\n".join(lines) + "\n"


def check_destination(dest: Path, root: Path, voices: list[Path]) -> None:
    """Refuse any DEST whose emptying would lose something: the repository itself, a folder that is not a
    Space clone, or the folder a voice is read from."""
    if dest == root or dest in root.parents or root in dest.parents:
        raise SpaceError(f"{dest} is this repository, inside it or above it; give a folder outside it")
    if dest.exists() and not dest.is_dir():
        raise SpaceError(f"{dest} is not a folder")
    if dest.is_dir() and any(p.name not in KEPT | {".gitattributes"} for p in dest.iterdir()) and not (dest / ".git").exists():
        raise SpaceError(f"{dest} holds files and is not a git clone; give a clone of your Space or a new folder")
    for voice in voices:
        if voice == dest or dest in voice.parents:
            raise SpaceError(f"voice {voice} is inside {dest}, which is emptied first; copy it elsewhere")


def assemble(dest: Path, voices: list[Path], root: Path = ROOT) -> list[str]:
    """Make `dest` hold exactly the Space: code, Space files, .gitattributes and the voices. Returns its files."""
    dest, root = dest.resolve(), root.resolve()
    voices = [voice.resolve() for voice in voices]
    names = [voice.name for voice in voices]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SpaceError(f"two voices named {', '.join(duplicates)}: the folder name is the model name")
    check_destination(dest, root, voices)
    check_readme(root / "README.md")
    rules = dockerignore_rules((root / ".dockerignore").read_text(encoding="utf-8"))
    plan = [(root / name, name) for name in code_files(root)]
    for voice in voices:
        plan += voice_files(voice, rules)

    dest.mkdir(parents=True, exist_ok=True)
    attributes = dest / ".gitattributes"
    existing = attributes.read_text(encoding="utf-8") if attributes.is_file() else ""
    for entry in dest.iterdir():
        if entry.name in KEPT:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    carried = {target for _, target in plan} | {".gitattributes"}
    for source, target in plan:
        (dest / target).parent.mkdir(parents=True, exist_ok=True)
        if target == "README.md":
            (dest / target).write_text(space_readme(source.read_text(encoding="utf-8"), carried), encoding="utf-8")
        else:
            shutil.copyfile(source, dest / target)
    attributes.write_text(merged_gitattributes(existing), encoding="utf-8")
    return sorted([target for _, target in plan] + [".gitattributes"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.tools.space",
        description="Fill DEST (a clone of your Hugging Face Space) with what its Docker build needs and your voices. "
        "Everything in DEST except .git is replaced.",
    )
    parser.add_argument("dest", type=Path, help="the Space's folder: a git clone of it, or a new folder")
    parser.add_argument("--voice", type=Path, action="append", default=[], help="a voice folder (repeat for more)")
    args = parser.parse_args(argv)
    if not args.voice:
        print("note: no --voice: the image installs Genie's predefined voice at build time", file=sys.stderr)
    try:
        files = assemble(args.dest, args.voice)
    except SpaceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    size = sum((args.dest / name).stat().st_size for name in files)
    voices = ", ".join(voice.resolve().name for voice in args.voice) or "none"
    print(f"{args.dest}: {len(files)} files, {size / 1e6:.1f} MB; voices: {voices}")
    print(f"next: cd {args.dest} && git add -A && git commit -m 'Update the Space' && git push")
    return 0


if __name__ == "__main__":
    sys.exit(main())
