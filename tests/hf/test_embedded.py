"""Resolving embedded model names (``segmask.hf.models.resolve``) without any model package: a GGUF assembled from
chunk packages is converted once and its scratch file removed; missing packages raise ``ValueError`` naming the
install command. No model is loaded; CPU only, no network."""

from __future__ import annotations

import pytest

from segmask.hf import models


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SEGMASK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_assembled_gguf_is_converted_once_and_its_scratch_file_removed(monkeypatch, cache, tmp_path):
    assembled, converted = [], []

    def assemble(package):
        path = tmp_path / f"{package}.gguf"
        path.write_bytes(b"GGUF")
        assembled.append(path)
        return path

    def convert(folder, filename, target):
        assert (folder / filename).read_bytes() == b"GGUF"
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        converted.append(target)

    monkeypatch.setitem(models._EMBEDDED, "chunked", ("segmask", assemble, "make chunks"))
    monkeypatch.setattr(models, "_convert", convert)
    assert models.resolve("chunked") == (str(cache / "chunked"), {})
    assert models.resolve("chunked") == (str(cache / "chunked"), {})  # the second call reads the converted copy
    assert converted == [cache / "chunked"] and len(assembled) == 1 and not assembled[0].exists()

    def broken(folder, filename, target):
        raise OSError("disk full")

    monkeypatch.setattr(models, "_convert", broken)
    monkeypatch.setitem(models._EMBEDDED, "other", ("segmask", assemble, "make chunks"))
    with pytest.raises(OSError, match="disk full"):
        models.resolve("other")
    assert len(assembled) == 2 and not assembled[1].exists()  # removed on failure too


def test_missing_packages_name_the_install_command(monkeypatch, cache):
    def missing_part(package):
        raise ModuleNotFoundError("No module named 'part3'")

    monkeypatch.setitem(models._EMBEDDED, "chunked", ("segmask", missing_part, "make chunks"))
    with pytest.raises(ValueError, match="'chunked': No module named 'part3'; reinstall with: make chunks"):
        models.resolve("chunked")
    monkeypatch.setitem(models._EMBEDDED, "absent", ("no_such_package_segmask", missing_part, "make chunks"))
    with pytest.raises(ValueError, match="'absent' needs its wheel: make chunks"):
        models.resolve("absent")
    assert not (cache / "chunked").exists()

