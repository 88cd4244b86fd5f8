"""The control stage's fast paths give exactly what the general ones give (issue 16, speed):
our PNG writer, the clay table for half-float passes, the reader of uncompressed EXRs."""

import io
import shutil
from pathlib import Path

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from conftest import make_shot, run_backend
from inference import control, exr_uncompressed, files, passes
from inference.protocol import BackendError


@pytest.mark.parametrize("png_filter", sorted(files.PNG_FILTERS))
@pytest.mark.parametrize("level", [0, 1, 6])
def test_png_writer_round_trips_grey_16_bit_and_rgb(png_filter, level):
    rng = np.random.default_rng(7)
    ramp = np.add.outer(np.arange(37), np.arange(53))  # runs and wrap-arounds for the filters
    images = {
        "L": (ramp * 7 % 256).astype(np.uint8),
        "I;16": (ramp * 1297 % 65536).astype(np.uint16),
        "RGB": rng.integers(0, 256, (37, 53, 3), dtype=np.uint8),
    }
    for mode, pixels in images.items():
        decoded = Image.open(io.BytesIO(files.png_bytes(pixels, png_filter, level)))
        assert decoded.mode == mode and decoded.size == (53, 37)
        assert np.array_equal(np.asarray(decoded), pixels), (mode, png_filter, level)


def test_png_writer_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="png_bytes takes"):
        files.png_bytes(np.zeros((4, 4), np.float32))


def test_clay_of_a_half_float_pass_equals_the_srgb_formula_for_every_half_value():
    """The table lookup against the formula on the float32 values, in the pass's own layout."""
    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16)
    every = every[~np.isnan(every)]
    rgb = np.stack([every, every[::-1], np.roll(every, 12345)], axis=-1)
    combined = np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=-1).reshape(1, -1, 4)
    expected = np.round(control.linear_to_srgb(combined.astype(np.float32)[..., :3]) * 255.0).astype(np.uint8)
    assert np.array_equal(control.clay_image(combined), expected)


def recompress(path: Path, compression, out: Path, multipart: bool = True) -> None:
    """`path` rewritten with `compression`, Combined as half float (as the passes write it), as
    Blender 5.0 (a part per pass) or 4.x (one part) lays it out."""
    channels = {}
    for part in OpenEXR.File(str(path), separate_channels=True).parts:
        for name, channel in part.channels.items():
            pixels = np.array(channel.pixels)
            channels[name] = pixels.astype(np.float16) if ".Combined." in name else pixels
    header = {"compression": compression, "type": OpenEXR.scanlineimage}
    if multipart:
        groups = {}
        for name, pixels in channels.items():
            groups.setdefault(name.rsplit(".", 1)[0], {})[name] = pixels
        parts = [OpenEXR.Part(dict(header), group, part) for part, group in groups.items()]
    else:
        parts = [OpenEXR.Part(header, channels, "ViewLayer")]
    OpenEXR.File(parts).write(str(out))


@pytest.mark.parametrize("multipart", [True, False], ids=["blender-5.0", "blender-4.x"])
def test_uncompressed_reader_gives_what_the_binding_gives(tmp_path, multipart):
    shot = make_shot(tmp_path / "shot", frames=1, size=(37, 21))
    source = shot / "passes" / "0001.exr"
    recompress(source, OpenEXR.NO_COMPRESSION, tmp_path / "none.exr", multipart)
    recompress(source, OpenEXR.ZIP_COMPRESSION, tmp_path / "zip.exr", multipart)
    parts = exr_uncompressed.read((tmp_path / "none.exr").read_bytes())
    assert parts is not None, "the fast path must take an uncompressed file"
    ours = {name: pixels for part in parts for name, pixels in part.items()}
    theirs = {name: channel.pixels for part in OpenEXR.File(str(tmp_path / "none.exr"), separate_channels=True).parts
              for name, channel in part.channels.items()}
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name].dtype == theirs[name].dtype and np.array_equal(ours[name], theirs[name]), name
    assert exr_uncompressed.read((tmp_path / "zip.exr").read_bytes()) is None  # compressed: the binding's job
    fast, general = passes.read(tmp_path / "none.exr", 1, True), passes.read(tmp_path / "zip.exr", 1)
    for field in ("depth", "normal", "combined", "object_index"):
        a, b = getattr(fast, field), getattr(general, field)
        assert a.dtype == b.dtype and np.array_equal(a, b), field
    assert all(np.array_equal(a, b) for a, b in zip(fast.vector, general.vector))
    assert fast.fingerprint == files.fingerprint_file(tmp_path / "none.exr")
    # Depth alone (the depth maps' second pass): only its part read from an uncompressed file.
    part = exr_uncompressed.read_part(tmp_path / "none.exr", "Depth.Z")  # Blender 4.x: its one part, all channels
    assert (len(part) == 1) == multipart
    (depth,) = [pixels for name, pixels in part.items() if name.endswith(".Depth.Z")]
    assert np.array_equal(depth, fast.depth)
    assert exr_uncompressed.read_part(tmp_path / "zip.exr", "Depth.Z") is None
    assert exr_uncompressed.read_part(tmp_path / "none.exr", "Nothing.Z") is None
    for path in ("none.exr", "zip.exr"):
        assert np.array_equal(passes.read_depth(tmp_path / path, 1), fast.depth), path


@pytest.mark.parametrize("keep", [0.3, 0.999])
def test_cut_off_uncompressed_pass_is_damaged(tmp_path, keep):
    shot = make_shot(tmp_path / "shot", frames=1)
    path = shot / "passes" / "0001.exr"
    recompress(path, OpenEXR.NO_COMPRESSION, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    for read in (passes.read, passes.read_depth):
        with pytest.raises(BackendError) as error:
            read(path, 1)
        assert error.value.code == "corrupt_pass" and "frame 1" in error.value.message


def test_uncompressed_passes_make_the_same_maps_as_compressed_ones(tmp_path):
    """The whole stage, fast reader against the binding: every file the same, bit for bit."""
    made = {}
    for name, compression in (("zip", OpenEXR.ZIP_COMPRESSION), ("none", OpenEXR.NO_COMPRESSION)):
        shot = make_shot(tmp_path / name / "shot", frames=3)
        for path in (shot / "passes").glob("*.exr"):
            recompress(path, compression, path)
        run = run_backend("control", str(shot))
        assert run.returncode == 0, run.stderr
        made[name] = shot / "control"
    found = sorted(p.relative_to(made["zip"]) for p in made["zip"].rglob("*") if p.is_file() and p.name != "stats.json")
    assert len(found) > 3 * 8
    assert found == sorted(p.relative_to(made["none"]) for p in made["none"].rglob("*")
                           if p.is_file() and p.name != "stats.json")
    for path in found:
        assert (made["zip"] / path).read_bytes() == (made["none"] / path).read_bytes(), path
    shutil.rmtree(tmp_path)


def test_depth_alone_from_a_file_whose_headers_outgrow_the_first_read(tmp_path, monkeypatch):
    """read_part reads more until the headers and offset tables parse (tall images: 8 bytes a
    scanline a part), then only the Depth part."""
    shot = make_shot(tmp_path / "shot", frames=1, size=(37, 21))
    recompress(shot / "passes" / "0001.exr", OpenEXR.NO_COMPRESSION, tmp_path / "none.exr", True)
    monkeypatch.setattr(exr_uncompressed, "HEAD_BYTES", 64)
    part = exr_uncompressed.read_part(tmp_path / "none.exr", "Depth.Z")
    assert part is not None and np.array_equal(next(iter(part.values())), passes.read(tmp_path / "none.exr", 1).depth)
