"""`efence vision eval/read` end to end on small copies of the labelled folders."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from efence.cli import app

from .conftest import data_dir

runner = CliRunner()


@pytest.fixture(scope="module")
def small_plates(tmp_path_factory):
    src = data_dir("plates")
    dst = tmp_path_factory.mktemp("plates")
    lines = (src / "labels.csv").read_text(encoding="utf-8").splitlines()
    keep = [lines[0]] + [
        ln for ln in lines[1:] if ln.split(",")[0] in ("ccpd_01.jpg", "ccpd_17.jpg", "ccpd_19.jpg")
    ]
    for ln in keep[1:]:
        shutil.copy(src / ln.split(",")[0], dst)
    (dst / "labels.csv").write_text("\n".join(keep) + "\n", encoding="utf-8")
    return dst


def test_eval_json_is_one_object(small_plates) -> None:
    result = runner.invoke(app, ["vision", "eval", str(small_plates), "--json"])
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout.strip())
    assert set(obj) == {"kind", "total", "exact", "wrong", "rejected", "accuracy", "ms_per_image"}
    assert obj["kind"] == "plates" and obj["total"] == 3 and obj["exact"] == 3 and obj["wrong"] == 0


def test_eval_table_and_details(small_plates) -> None:
    result = runner.invoke(app, ["vision", "eval", str(small_plates), "--details"])
    assert result.exit_code == 0, result.output
    assert "ccpd_17.jpg" in result.stdout and "exact" in result.stdout


def test_eval_container_kind_from_header(tmp_path) -> None:
    src = data_dir("containers")
    shutil.copy(src / "container_01.jpg", tmp_path)
    (tmp_path / "labels.csv").write_text("filename,container_number\ncontainer_01.jpg,MSKU4135329\n")
    result = runner.invoke(app, ["vision", "eval", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout.strip())
    assert obj["kind"] == "containers" and obj["exact"] == 1


def test_eval_bad_header(tmp_path) -> None:
    (tmp_path / "labels.csv").write_text("file,text\na.jpg,x\n")
    result = runner.invoke(app, ["vision", "eval", str(tmp_path)])
    assert result.exit_code == 2


def test_read_plate_and_container() -> None:
    r = runner.invoke(app, ["vision", "read", str(data_dir("plates") / "ccpd_01.jpg"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["text"] == "皖A13H25"
    r = runner.invoke(
        app,
        ["vision", "read", str(data_dir("containers") / "container_09.jpg"), "--kind", "container", "--json"],
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["text"] == "CXTU1125031" and out["owner"] == "CXTU"


def test_read_rejection_exit_code(tmp_path) -> None:
    import cv2
    import numpy as np

    path = tmp_path / "blank.png"
    cv2.imwrite(str(path), np.full((200, 300, 3), 200, np.uint8))
    r = runner.invoke(app, ["vision", "read", str(path)])
    assert r.exit_code == 1 and "manual review" in r.stdout


def test_missing_extra_message(monkeypatch) -> None:
    import edge_agent.vision as v

    def missing() -> None:
        raise v.VisionUnavailable("the vision extra is not installed (missing: cv2)")

    monkeypatch.setattr(v, "require_vision", missing)
    r = runner.invoke(app, ["vision", "read", str(data_dir("plates") / "ccpd_01.jpg")])
    assert r.exit_code == 2 and "vision extra" in r.output
