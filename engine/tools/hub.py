"""Downloads from the Hugging Face model repo that hosts GenieData and Genie's predefined voices."""

from __future__ import annotations

from pathlib import Path

HF_REPO = "High-Logic/Genie"


def fetch_folder(folder: str, staging: Path) -> Path:
    """Download `<folder>/*` of the repo under `staging` (resumable) and return where it landed.

    `staging` is kept on failure: a retry then fetches only the files still missing.
    """
    from huggingface_hub import snapshot_download

    snapshot_download(repo_id=HF_REPO, repo_type="model", allow_patterns=f"{folder}/*", local_dir=str(staging))
    return staging / folder
