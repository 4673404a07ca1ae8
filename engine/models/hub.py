"""Downloads from the Hugging Face model repo that hosts GenieData and Genie's predefined voices."""

from __future__ import annotations

from pathlib import Path

HF_REPO = "High-Logic/Genie"
#: The repo's commit every download asks for, so a build gets the files it was tested with, never whatever
#: the repo's `main` holds that day (a changed or replaced file would change every image built after it).
#: This commit holds GenieData/ and CharacterModels/v2ProPlus/{mika,feibi,thirtyseven}/. To move to a newer
#: one, change it here and check the server and the predefined voices on it.
HF_REVISION = "52b17272e0b7032415e85ad37b551db2386b1810"


def fetch_folder(folder: str, staging: Path) -> Path:
    """Download `<folder>/*` of the repo at HF_REVISION under `staging` (resumable) and return where it landed.

    `staging` is kept on failure: a retry then fetches only the files still missing.
    """
    from huggingface_hub import HfApi, snapshot_download

    # Asked first because it fails at once, offline or for a revision the repo lacks (RevisionNotFoundError);
    # given a commit, snapshot_download goes straight to its file listing, which it retries for about 25 s.
    HfApi().repo_info(HF_REPO, repo_type="model", revision=HF_REVISION)
    snapshot_download(
        repo_id=HF_REPO, repo_type="model", revision=HF_REVISION, allow_patterns=f"{folder}/*", local_dir=str(staging)
    )
    return staging / folder
