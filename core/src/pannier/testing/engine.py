"""An engine configuration in a test's folder: the channel files and ``pannier.toml`` that
the kernel's and the API's engine fixtures (and a plugin's own) start from."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pannier.config import Config, load_config


def engine_config(folder: Path, channels: Sequence[str], extra: str = "") -> Config:
    """Write each channel (TOML text) to ``folder/channels/`` and a ``pannier.toml`` that
    loads them on a fresh SQLite database in ``folder/var`` (``extra`` is appended to it, e.g.
    ``"[api]\\nport = 0\\n"``); the configuration as the engine would load it, without the
    process environment."""
    channel_folder = folder / "channels"
    channel_folder.mkdir(parents=True, exist_ok=True)
    for index, text in enumerate(channels):
        (channel_folder / f"channel{index}.toml").write_text(text, encoding="utf-8")
    path = folder / "pannier.toml"
    path.write_text(
        f'[server]\ndata_dir = "var"\n[channels]\npaths = ["channels/*.toml"]\n{extra}',
        encoding="utf-8",
    )
    return load_config(path, environ={})
