"""Models on the HuggingFace Hub: ``hf://ORG/NAME[@REVISION]`` wherever a model folder is accepted, and
``seqnlp push``.

A downloaded model is a model folder like any other and goes through the same checks (``seqnlp.storage.folders``): only
the files a model folder holds are fetched (JSON, safetensors, SentencePiece models, the card), never code
or pickles.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from seqnlp.errors import ConfigError, SeqNLPError

PREFIX = "hf://"
MODEL_FILES = ["config.json", "model.safetensors", "*.model", "README.md"]
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def is_hub_path(path) -> bool:
    return isinstance(path, str) and path.startswith(PREFIX)


def parse(path: str) -> tuple[str, str | None]:
    """``hf://ORG/NAME[@REVISION]`` as ``(repo_id, revision)``."""
    repo_id, _, revision = path[len(PREFIX) :].partition("@")
    if not REPO_ID.match(repo_id) or ".." in repo_id:
        raise ConfigError(f"{path[:120]}: a Hub model is hf://ORG/NAME or hf://ORG/NAME@REVISION")
    return repo_id, revision or None


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def model_directory(path) -> Path:
    """A model path as a local folder: ``hf://`` paths are downloaded into (or found in) the HuggingFace cache."""
    if not is_hub_path(path):
        return Path(path)
    repo_id, revision = parse(path)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=MODEL_FILES,
            local_files_only=offline(),
            cache_dir=os.environ.get("HF_HUB_CACHE") or None,  # read now: the library reads it once, at import
            library_name="seqnlp",
        )
    except LocalEntryNotFoundError:
        where = "the HuggingFace cache (HF_HUB_OFFLINE is set)" if offline() else "the HuggingFace cache or the Hub"
        raise ConfigError(f"{path}: not found in {where}") from None
    except HfHubHTTPError as err:
        raise ConfigError(f"{path}: {str(err).splitlines()[0][:200]}") from None
    return Path(folder)


def push(directory, repo_id: str, private: bool = False, revision: str | None = None, message: str | None = None):
    """Upload a checked model folder to the Hub (``upload_folder``); returns the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not REPO_ID.match(repo_id):
        raise ConfigError(f"{repo_id[:120]!r} is not a Hub repository id (ORG/NAME)")
    api = HfApi()
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(directory),
            repo_id=repo_id,
            revision=revision,
            allow_patterns=MODEL_FILES,
            commit_message=message or f"seqnlp model from {Path(directory).name}",
        )
    except HfHubHTTPError as err:
        raise SeqNLPError(f"push to {repo_id}: {str(err).splitlines()[0][:200]}") from None
    return commit.commit_url
