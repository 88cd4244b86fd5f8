"""The bad-preset corpus (preset_corpus.py): every mutation of the default preset is refused
with one message that names its key and what it expects; a preset that smuggles code stays
inert data; `check-preset` and `shot` refuse every bad file and change nothing on disk."""
import hashlib
import os
import re
import subprocess
import sys
import tomllib

import pytest

import preset_corpus as corpus
from addon import cli
from addon.core import checks, model_ids
from addon.core.preset import _SECTIONS as SECTIONS
from addon.core.preset import PresetError, load_preset, preset_from_dict
from addon.core.shot_manifest import build_manifest, write_manifest
from addon.core.toml_writer import dumps
from conftest import REPO

CASES = corpus.cases()
# What each kind of mutation must be told: the expected type, the range, the limit or the fix.
# (The destruction sections say "expected an integer", "is outside the allowed range [lo, hi]".)
_TYPE = (r"expected (int \(a whole number\)|float \(a number\)|bool \(true or false\)|an integer|a number"
         r"|\[width, height\]|a list of)")
_NON_FINITE = r"(is not a finite number \(expected a float from \S+ to \S+\)|must be finite|outside the allowed range)"
_HIGH = r"(is above the maximum|is outside the allowed range \[\S+, \S+\])"
SAYS = {"str": _TYPE, "bool": _TYPE + r".*got (the boolean true|\[+True)", "code": _TYPE + "|is not one of",
        "float": _TYPE, "nan": _NON_FINITE + "|" + _TYPE, "inf": _NON_FINITE, "-inf": _NON_FINITE,
        "below": r"is below the minimum", "above": _HIGH, "huge": _HIGH,
        "int": r"expected (str \(text in quotes\)|bool \(true or false\))", "long": r"is longer than the limit of \d+ characters",
        "choice": r"is not one of", "typo": r"unknown (key|section or key); did you mean '\w+'\?",
        "3": r"expected \[width, height\]"}


def _problems(case) -> list[str]:
    try:
        data = case.data if case.data is not None else tomllib.loads(case.text)
    except tomllib.TOMLDecodeError:
        return ["not valid TOML: (tomllib refused it)"]
    try:
        preset_from_dict(data)
    except PresetError as exc:
        return exc.problems
    return []


def test_every_bad_preset_gets_one_message_naming_its_key_and_what_it_expects():
    assert len(CASES) > 400, len(CASES)  # the generator still covers every key
    wrong = []
    for case in CASES:
        problems = _problems(case)
        kind = case.id.rsplit("=", 1)[-1]
        if len(problems) != 1 or not problems[0].startswith(f"{case.key}:"):
            wrong.append(f"{case.id}: {problems}")
        elif kind in SAYS and not re.search(SAYS[kind], problems[0]):
            wrong.append(f"{case.id}: {problems[0]!r} does not match {SAYS[kind]!r}")
    assert not wrong, f"{len(wrong)} of {len(CASES)} cases:\n" + "\n".join(wrong[:40])


def test_every_number_has_a_range_and_every_string_a_limit():
    """What makes a huge, tiny or over-long value impossible to miss, for keys added later too."""
    import dataclasses
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.type in ("int", "float", "tuple[int, int]"):
                assert None not in (f.metadata.get("min"), f.metadata.get("max")), f"{section}.{f.name} has no range"
            elif f.type == "str":
                assert len(f.default) <= f.metadata.get("max_length", checks.MAX_STRING), f"{section}.{f.name}"


@pytest.mark.parametrize("value, says", [
    ("../../../../etc/passwd", "is a path with '..' in it"),
    ("/etc", "is a folder without a model in it"),
    ("/no/such/folder", "is not an existing folder on this machine"),
    ("~/models/sd15", "relative to a home folder"),
    ("models/sd15/extra", "is not a hub id: write owner/name"),
    ("x" * 97 + "/name", "is not a hub id"),
])
def test_model_ids_name_a_hub_repository_or_a_local_model_folder(value, says):
    assert says in model_ids.model_id_problem(value)


def test_hub_ids_and_local_model_folders_are_accepted(tmp_path):
    for hub_id in ("stable-diffusion-v1-5/stable-diffusion-v1-5", "guoyww/animatediff-motion-adapter-v1-5-3",
                   "a/b", "Owner_1/name.v2", "x" * 96 + "/" + "y" * 96):
        assert model_ids.model_id_problem(hub_id) is None, hub_id
    folder = tmp_path / "controlnet"
    folder.mkdir()
    assert "without a model" in model_ids.model_id_problem(str(folder))
    (folder / "config.json").write_text("{}")
    data = corpus.default_data()
    data["model"]["motion_adapter"] = str(folder)
    assert preset_from_dict(data).model.motion_adapter == str(folder)
    # A shot's own preset read back where the folder is absent (a farm node): the form is checked, not the folder.
    data["model"]["motion_adapter"] = str(tmp_path / "elsewhere")
    assert preset_from_dict(data, check_local=False).model.motion_adapter == str(tmp_path / "elsewhere")
    with pytest.raises(PresetError, match="not an existing folder"):
        preset_from_dict(data)


def test_a_shot_longer_than_the_sane_maximum_is_refused_saying_so():
    data = corpus.default_data()
    data["shot"]["frame_end"] = data["shot"]["frame_start"] + checks.MAX_SHOT_FRAMES
    with pytest.raises(PresetError) as err:
        preset_from_dict(data)
    assert err.value.problems == [
        f"shot.frame_end: frames 25-{25 + checks.MAX_SHOT_FRAMES} make a shot of {checks.MAX_SHOT_FRAMES + 1} "
        f"frames, beyond the sane maximum of {checks.MAX_SHOT_FRAMES} frames for one shot (about 7 minutes at "
        "24 fps); split longer work into several shots"]


def test_unknown_schemas_are_refused_listing_the_known_ones():
    for schema in ("rubble.preset/0", "rubble.preset/99", "other/1"):
        data = corpus.default_data()
        data["schema"] = schema
        data["look"]["colour"] = "red"  # another schema's keys: not reported, the schema is the news
        with pytest.raises(PresetError) as err:
            preset_from_dict(data)
        (problem,) = err.value.problems
        assert problem.startswith("schema: ") and "reads 'rubble.preset/1'" in problem, problem


def test_a_huge_deep_or_binary_file_is_refused_before_parsing(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text(corpus.DEFAULT_TEXT + "# " + "x" * checks.MAX_PRESET_BYTES + "\n")
    with pytest.raises(PresetError, match="larger than 1024 KiB"):
        load_preset(big)
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000)
    with pytest.raises(PresetError, match="nested too deeply"):
        load_preset(deep)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe" + corpus.DEFAULT_TEXT.encode("utf-16-le"))
    with pytest.raises(PresetError, match="not UTF-8 text"):
        load_preset(binary)


def test_code_in_free_text_stays_inert_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for case in corpus.inert_cases():
        preset = preset_from_dict(case.data)
        section, _, key = case.key.rpartition(".")
        value = getattr(getattr(preset, section), key) if section else getattr(preset, key)
        expected = case.data[section][key] if section else case.data[key]
        assert value == expected and isinstance(value, str)
    assert not (tmp_path / corpus.SENTINEL).exists()


def _case_file(case, folder):
    path = folder / f"{hashlib.sha1(case.id.encode()).hexdigest()[:12]}.toml"
    path.write_text(case.text if case.text is not None else dumps(case.data), encoding="utf-8")
    return path


def _tree(folder):
    """Every file and folder under `folder`: path -> (mtime, content hash)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            stat = os.stat(path)
            digest = hashlib.sha256(open(path, "rb").read()).hexdigest() if name in files else "dir"
            out[os.path.relpath(path, folder)] = (stat.st_mtime_ns, digest)
    return out


def _one_per_kind(cases):
    """The first case of each kind of field mutation, and every case of its own kind."""
    seen, out = set(), []
    for case in cases:
        kind = case.id.rsplit("=", 1)[-1] if case.id.split(".")[0] in SECTIONS else case.id
        if kind not in seen:
            seen.add(kind)
            out.append(case)
    return out


def test_check_preset_and_shot_refuse_every_bad_file_and_change_nothing(tmp_path, monkeypatch, capsys):
    """In-process, as `rubble check-preset` and `rubble shot` run it (`shot` on one case of each
    kind: it parses the same way); cwd is the sandbox, so a preset that managed to run code
    would leave its file there."""
    bad = tmp_path / "bad"
    bad.mkdir()
    files = {case.id: _case_file(case, bad) for case in CASES}
    shot = tmp_path / "shot"  # an existing shot: its shot.json is the truth, and must not move
    write_manifest(shot, build_manifest(load_preset().to_dict(), {}, {"rubble": "test"}))
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    wrong = []
    sample = {case.id for case in _one_per_kind(CASES)}
    assert 60 < len(sample) < 120, len(sample)
    for case in CASES:
        shot_runs = [["shot", str(shot), "--preset", str(files[case.id])],
                     ["shot", str(tmp_path / "new shot"), "--preset", str(files[case.id])]]
        for argv in [["check-preset", str(files[case.id])], *(shot_runs if case.id in sample else [])]:
            code = cli.main(argv)
            err = capsys.readouterr().err
            if code != 1 or err.count("error: Invalid preset") != 1 or f"- {case.key}" not in err:
                wrong.append(f"{case.id} {argv[0]}: exit {code}\n{err[-500:]}")
    assert not wrong, f"{len(wrong)} refusals went wrong:\n" + "\n".join(wrong[:10])
    assert _tree(tmp_path) == before
    assert not (tmp_path / corpus.SENTINEL).exists() and not (REPO / corpus.SENTINEL).exists()


def test_check_preset_subprocess_exits_non_zero_with_the_message(tmp_path):
    case = next(c for c in CASES if c.id == "text:base=passwd")
    path = _case_file(case, tmp_path)
    result = subprocess.run([sys.executable, "-m", "addon.cli", "check-preset", str(path)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "model.base: '../../../../etc/passwd' is a path with '..' in it" in result.stderr
