"""The README is also the Space's configuration: its front matter must be what Hugging Face expects."""

from __future__ import annotations

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
