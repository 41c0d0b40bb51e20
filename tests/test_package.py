import os
import subprocess
import sys
from pathlib import Path

import napari_segflow

ROOT = Path(__file__).resolve().parents[1]


def test_import_pulls_in_neither_torch_nor_qt():
    code = (
        "import sys, napari_segflow; print(sorted(m for m in ('torch', 'qtpy', 'PyQt5', 'napari') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_manifest_is_a_relative_symlink_and_valid():
    from npe2 import PluginManifest

    link = Path(napari_segflow.__file__).parent / "napari.yaml"
    assert link.is_symlink() and os.readlink(link) == "../napari.yaml"
    manifest = PluginManifest.from_file(ROOT / "napari.yaml")
    assert manifest.name == "napari-segflow"


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "napari_segflow.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "bench" in out.stdout
