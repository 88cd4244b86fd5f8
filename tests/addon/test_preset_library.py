"""The preset library (bpy-free): shipped + user presets listed, loaded, saved, duplicated,
imported and exported; TOML written by our writer reads back equal; a refused action
leaves the user folder exactly as it was."""
import math
import tomllib
from dataclasses import replace

import pytest

import preset_corpus as corpus
from addon.core.preset import DEFAULT_PRESET, PresetError, load_preset
from addon.core.preset_library import LibraryError, PresetLibrary, check_name, preset_text
from addon.core.toml_writer import dumps
from conftest import REPO


@pytest.mark.parametrize("data", [
    {"a": 1, "b": -2**63, "c": 2**63 - 1, "t": True, "f": False},
    {"x": 0.1, "y": -0.0, "z": 1e-05, "w": 1e300, "v": 2549.2905324448207, "u": 5e-324},
    {"s": 'quote " backslash \\ tab \t newline \n cr \r bell \x07 del \x7f nul \x00 é 漢 🙂', "e": ""},
    {"list": [1, 2, 3], "nested": [[0, 1], [2, 3]], "empty": [], "strings": ["a", "b\"c"]},
    {"sec": {"k": 1, "sub": {"deep": {"x": "y"}}}, "odd key": {"a.b": 1, "": 2, "ключ": 3}},
    {"arr": [{"kind": "a", "v": [1.5, 2.5]}, {"kind": "b", "sub": {"q": 1}}], "after": {"z": 0}},
])
def test_toml_writer_round_trips(data):
    assert tomllib.loads(dumps(data)) == data


def test_toml_writer_spells_non_finite_floats_and_refuses_what_toml_cannot_hold():
    back = tomllib.loads(dumps({"n": math.nan, "i": math.inf, "m": -math.inf}))
    assert math.isnan(back["n"]) and back["i"] == math.inf and back["m"] == -math.inf
    for bad in ({"x": None}, {"x": object()}, {"x": 2**63}, {1: "x"}, {"x": [1, {"a": 1}]}):
        with pytest.raises((TypeError, ValueError)):
            dumps(bad)


def test_every_shipped_preset_round_trips_through_the_writer():
    for path in sorted((REPO / "presets").glob("*.toml")):
        preset = load_preset(path)
        assert load_preset_text(preset_text(preset)) == preset, path.name


def load_preset_text(text):
    from addon.core.preset import preset_from_dict
    return preset_from_dict(tomllib.loads(text))


def _snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()} if folder.exists() else None


def test_library_lists_saves_duplicates_imports_and_exports(tmp_path):
    user = tmp_path / "user presets"
    library = PresetLibrary(user)
    shipped = [e.key for e in library.entries()]
    assert "shipped:default" in shipped and all(k.startswith("shipped:") for k in shipped)
    assert not user.exists()  # listing creates nothing

    # Save: the loaded preset, edited, as a user preset; load(save(p)) == p.
    preset = library.load("shipped:default")
    edited = replace(preset, look=replace(preset.look, prompt='dusk, "rain"\nwet streets'))
    saved = library.save(edited, "My look")
    assert saved.key == "user:My look" and saved.path == user / "My look.toml" and saved.title == "My look"
    again = library.load(saved.key)
    assert again == replace(edited, name="My look")
    assert library.load(library.save(again, "My look", overwrite=True).key) == again

    # Duplicate keeps the file as it is, comments included.
    copy = library.duplicate("shipped:default", "default copy")
    assert copy.path.read_text() == DEFAULT_PRESET.read_text() and copy.title == preset.name

    # Import copies a valid file in; export writes one out; both byte for byte.
    outside = tmp_path / "shared" / "from a colleague.toml"
    outside.parent.mkdir()
    outside.write_text(corpus.DEFAULT_TEXT.replace("seed = 1234", "seed = 99"))
    imported = library.import_file(outside)
    assert imported.key == "user:from a colleague" and library.load(imported.key).shot.seed == 99
    exported = library.export(imported.key, tmp_path / "out" / "to share")
    assert exported.name == "to share.toml" and exported.read_bytes() == outside.read_bytes()
    assert [e.key for e in library.entries() if not e.shipped] == ["user:default copy", "user:from a colleague",
                                                                   "user:My look"]
    assert not [p for p in user.iterdir() if p.name.startswith(".")], "a temporary file was left behind"


def test_refused_library_actions_change_nothing(tmp_path):
    user = tmp_path / "user"
    library = PresetLibrary(user)
    library.save(load_preset(), "kept")
    before = _snapshot(user)
    bad = tmp_path / "bad.toml"
    bad.write_text(corpus.DEFAULT_TEXT.replace('base = "stable-diffusion-v1-5/stable-diffusion-v1-5"',
                                               'base = "../../../../etc/passwd"'))
    with pytest.raises(PresetError, match=r"model\.base: '\.\./\.\./\.\./\.\./etc/passwd' is a path"):
        library.import_file(bad)
    with pytest.raises(LibraryError, match="already in your presets"):
        library.save(load_preset(), "KEPT")  # one file on macOS and Windows
    same_name = tmp_path / "kept.toml"
    same_name.write_text(corpus.DEFAULT_TEXT)
    with pytest.raises(LibraryError, match="already in your presets"):
        library.import_file(same_name)
    for name in ("../escape", "a/b", ".hidden", "con", "x" * 65, "", "trailing."):
        with pytest.raises(LibraryError, match="cannot be a preset name"):
            library.save(load_preset(), name)
    with pytest.raises(LibraryError, match="not a .toml preset"):
        library.import_file(tmp_path / "preset.py")
    with pytest.raises(LibraryError, match="no preset 'user:missing'"):
        library.duplicate("user:missing", "x")
    assert _snapshot(user) == before
    assert not (tmp_path / "escape.toml").exists()


def test_an_invalid_user_preset_is_listed_with_its_problem(tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    (user / "broken.toml").write_text(corpus.DEFAULT_TEXT.replace("fps = 24", "fps = nan"))
    (user / ".broken.toml.x.tmp").write_text("half a file")  # an interrupted atomic write: never listed
    (entry,) = [e for e in PresetLibrary(user).entries() if not e.shipped]
    assert entry.key == "user:broken" and entry.title == ""
    assert "shot.fps: expected int" in entry.problem
    with pytest.raises(PresetError, match="shot.fps"):
        PresetLibrary(user).load("user:broken")


def test_names_become_file_names():
    assert check_name(" Night rain.toml ") == "Night rain"
    assert check_name("v1.2_final-B") == "v1.2_final-B"
