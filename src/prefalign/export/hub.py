"""Upload an exported model folder to the Hugging Face Hub.

Needs a token (``--token``, ``HF_TOKEN``, or ``huggingface-cli login``) and a
network; without either the error says which is missing, in one line.
"""

from __future__ import annotations

from pathlib import Path

from prefalign.errors import PrefalignError


def resolve_token(token: str | None) -> str:
    from huggingface_hub import get_token

    found = token or get_token()
    if not found:
        raise PrefalignError("pushing to the Hub needs a token: pass --token, set HF_TOKEN, "
                             "or run `huggingface-cli login`")
    return found


def push_to_hub(folder: str | Path, repo_id: str, *, token: str | None = None,
                private: bool = False) -> str:
    """Create ``repo_id`` if needed and upload ``folder``; the repo's URL."""
    from huggingface_hub import HfApi

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PrefalignError(f"Hub repo id must look like owner/name, got '{repo_id}'")
    api = HfApi(token=resolve_token(token))
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                          commit_message="Upload model exported by prefalign")
    except Exception as err:  # network, auth and HTTP errors all become one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrefalignError(f"could not push to {repo_id}: {first}") from None
    return str(url)
