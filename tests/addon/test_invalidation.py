"""Change X -> redo exactly Y: each preset section re-runs the stages downstream of it and
nothing upstream. In-process, as the CLI drives the pipeline, on the small shot; the look
change runs generation for real (tiny model) and must reach the backend."""
import json

import pytest

from addon import pipeline
from addon.core.preset import load_preset
from conftest import SMALL_SHOT, write_preset

SCENE = {"build", "trigger", "bake"}


def _run(tmp_path, name, stages=pipeline.STAGES, backend=None, tiny=None, **changes):
    sections = {key: list(value) if isinstance(value, list) else dict(value) for key, value in SMALL_SHOT.items()}
    for section, values in changes.items():
        if isinstance(values, list):  # [[triggers]]: the list replaces the shot's
            sections[section] = values
        else:
            sections.setdefault(section, {}).update(values)
    job = pipeline.ShotJob(shot_dir=tmp_path / "shot", preset=load_preset(write_preset(tmp_path / f"{name}.toml", **sections)),
                           stages=stages, backend_python=str(backend or ""), tiny_model=tiny, owns_session=True)
    ran, skipped = set(), set()
    for progress in pipeline.run(job):
        stage = progress.stage.split(":")[0]
        (skipped if progress.message == "up to date, skipped" else ran).add(stage)
    assert not ran & skipped, (ran, skipped)
    return job, ran, skipped


def _stale_downstream(job):
    """Which of generate/composite the next full run would redo (their stamps against the keys)."""
    generate_fresh = job.stamps.key("generate") == job.generate_key()
    composite_fresh = job.stamps.key("composite") == pipeline.digest("composite", job.generate_key())
    return {name for name, fresh in (("generate", generate_fresh), ("composite", composite_fresh)) if not fresh}


LOOK = {"prompt": "a red brick warehouse collapsing at dusk"}


@pytest.fixture(scope="module")
def generated(tmp_path_factory, backend_python, tiny_model_dir):
    tmp_path = tmp_path_factory.mktemp("invalidation")
    job, ran, _ = _run(tmp_path, "base", backend=backend_python, tiny=tiny_model_dir)
    assert ran == set(pipeline.STAGES)
    return tmp_path, backend_python, tiny_model_dir


def test_a_new_prompt_redoes_generate_and_composite_only(generated):
    tmp_path, backend, tiny = generated
    job, ran, skipped = _run(tmp_path, "look", backend=backend, tiny=tiny, look=LOOK)
    assert ran == {"generate", "composite"} and skipped == SCENE | {"passes"}
    provenance = json.loads((job.shot_dir / "provenance.json").read_text())
    assert LOOK["prompt"] in json.dumps(provenance), "the backend generated with the old prompt"


@pytest.mark.parametrize("section, change, redone", [
    ("model", {"overlap": 2}, set()),                       # model: generate and composite only
    ("long_shot", {"mode": "windows"}, set()),              # long_shot and memory: the same
    ("memory", {"offload": "model"}, set()),
    ("render", {"samples": 3}, {"passes"}),                 # render: passes and after
    ("render", {"denoise": False}, {"passes"}),
    ("triggers", [{"kind": "column_removal", "frame": 2}], SCENE | {"passes"}),  # scene sections: everything
    ("materials", {"concrete": {"tensile_strength_pa": 2.0e6}}, SCENE | {"passes"}),
    ("building", {"storeys": 3}, SCENE | {"passes"}),
    ("shot", {"seed": 99}, SCENE | {"passes"}),
])
def test_a_section_change_redoes_exactly_what_follows_it(generated, section, change, redone):
    tmp_path, _, _ = generated
    # Only the stages up to passes run here (generation is paid for once, above); the key of
    # each later stage says whether the next full run would redo it.
    job, ran, skipped = _run(tmp_path, section, stages=("passes",), look=LOOK, **{section: change})
    assert ran == redone and skipped == (SCENE | {"passes"}) - redone
    assert _stale_downstream(job) == {"generate", "composite"}


def test_a_new_lens_redoes_the_passes_and_after_but_keeps_the_bake(tmp_path):
    """The camera is no input to the simulation: build re-aims the baked scene's camera, bake keeps
    its cache and saves the camera in shot.blend and shot.json, the passes render through it."""
    import bpy

    _run(tmp_path, "base", stages=("passes",))
    bake_stamp = tmp_path / "shot" / ".rubble" / "stamps" / "bake" / "_"
    before = bake_stamp.stat()
    job, ran, skipped = _run(tmp_path, "lens", stages=("passes",), camera={"lens_mm": 50.0})
    assert ran == {"build", "bake", "passes"} and skipped == {"trigger"}
    assert bake_stamp.stat().st_ino == before.st_ino, "the simulation was baked again"
    assert _stale_downstream(job) == {"generate", "composite"}
    manifest = json.loads((job.shot_dir / "shot.json").read_text())
    assert {record["lens_mm"] for record in manifest["camera"].values()} == {50.0}
    assert manifest["preset"]["camera"]["lens_mm"] == 50.0
    bpy.ops.wm.open_mainfile(filepath=str(job.shot_dir / "shot.blend"))
    scene = bpy.data.scenes["Rubble"]
    assert scene.camera.data.lens == 50.0 and scene["rubble_camera_key"] == job.camera_key()
    assert scene.rigidbody_world.point_cache.is_baked
    _, ran, skipped = _run(tmp_path, "lens", stages=("passes",), camera={"lens_mm": 50.0})
    assert not ran and skipped == SCENE | {"passes"}
