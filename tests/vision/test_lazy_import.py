"""The package must import without OpenCV: an edge without cameras does not carry the extra."""

from __future__ import annotations

import subprocess
import sys


def test_pure_modules_and_cli_import_without_cv2() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('cv2', 'rapidocr_onnxruntime', 'onnxruntime'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import edge_agent.vision as v\n"
        "from edge_agent.vision import iso6346, plate_format, consensus\n"
        "import efence.commands.vision\n"
        "assert iso6346.is_valid('CSQU3054383')\n"
        "try:\n"
        "    v.require_vision()\n"
        "except v.VisionUnavailable as e:\n"
        "    assert 'vision extra' in str(e)\n"
        "else:\n"
        "    raise SystemExit('require_vision should fail')\n"
        "try:\n"
        "    v.PlateReader\n"
        "except v.VisionUnavailable:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('PlateReader should need the extra')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr + proc.stdout
