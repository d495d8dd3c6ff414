"""mkdocs hook: the notebooks' figures join the site at build time.

``notebooks/gallery/*.png`` (written by ``make gallery``) are served as
``notebooks/gallery/<name>.png``, where the generated notebook pages embed them; nothing is
copied into docs/, so the figures have one home in the repository.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

GALLERY = Path(__file__).resolve().parents[1] / "notebooks" / "gallery"


def on_files(files, config):
    for png in sorted(GALLERY.glob("*.png")):
        files.append(File.generated(config, f"notebooks/gallery/{png.name}", abs_src_path=str(png)))
    return files
