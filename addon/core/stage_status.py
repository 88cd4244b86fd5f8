"""What the panel says about each stage (up to date / stale / missing) and why a stage's
button cannot run, from the stamps alone (core/stamps.py): no Blender, no backend.

A stage is up to date when its stamp holds the key the current preset gives it and its
outputs exist; stale when it ran with other inputs (or its outputs were deleted); missing
when it never ran. Keys chain (pipeline.ShotJob), so a changed section makes every stage
downstream of it stale.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .stamps import Stamps

UP_TO_DATE, STALE, MISSING = "up to date", "stale", "missing"
# The stages the panel has a button for; trigger runs with build (pipeline.run).
PANEL_STAGES = ("build", "bake", "passes", "generate", "composite")


@dataclass(frozen=True)
class StageKeys:
    """The keys the current preset gives each stage (pipeline.stage_keys)."""
    scene: str
    camera: str
    passes: str
    generate: str
    composite: str


@dataclass(frozen=True)
class StageState:
    state: str
    detail: str = ""

    @property
    def text(self) -> str:
        return f"{self.state} ({self.detail})" if self.detail else self.state


def _whole(stamps: Stamps, stage: str, key: str, outputs: list[Path]) -> StageState:
    recorded = stamps.key(stage)
    if recorded is None:
        return StageState(MISSING)
    if recorded != key:
        return StageState(STALE, "inputs changed")
    absent = [p for p in outputs if not Path(p).exists()]
    if absent:
        return StageState(STALE, f"{Path(absent[0]).name} was deleted")
    return StageState(UP_TO_DATE)


def _passes(stamps: Stamps, key: str, shot_dir: Path, frames: range) -> StageState:
    recorded = {f: stamps.key("passes", str(f)) for f in frames}
    if all(k is None for k in recorded.values()):
        return StageState(MISSING)
    fresh = sum(1 for f, k in recorded.items() if k == key and (shot_dir / "passes" / f"{f:04d}.exr").exists())
    if fresh == len(frames):
        return StageState(UP_TO_DATE, f"{fresh} frames")
    return StageState(STALE, f"{fresh} of {len(frames)} frames up to date")


def stage_states(shot_dir: Path, keys: StageKeys, frames: range,
                 keys_in_file: tuple[str | None, str | None] | None) -> dict[str, StageState]:
    """Each panel stage's state. `keys_in_file`: the scene and camera keys of the shot's scene in
    the open .blend (None when it has none): Build is about that scene, Bake about shot.blend. The
    camera is built with the scene, but a new one keeps the bake (pipeline.ShotJob.camera_key)."""
    shot_dir = Path(shot_dir)
    stamps = Stamps(shot_dir)
    if keys_in_file is None:
        build = StageState(MISSING, "not in this file")
    elif keys_in_file[0] != keys.scene:
        build = StageState(STALE, "preset changed")
    elif keys_in_file[1] != keys.camera:
        build = StageState(STALE, "camera changed")
    else:
        build = StageState(UP_TO_DATE)
    generated = [shot_dir / "frames" / f"{f:04d}.png" for f in frames]
    return {
        "build": build,
        "bake": _whole(stamps, "bake", keys.scene, [shot_dir / "shot.blend", shot_dir / "shot.json"]),
        "passes": _passes(stamps, keys.passes, shot_dir, frames),
        "generate": _whole(stamps, "generate", keys.generate,
                           [*generated, shot_dir / "provenance.json", shot_dir / "contact_sheet.png"]),
        "composite": _whole(stamps, "composite", keys.composite, [shot_dir / "final.mp4"]),
    }


def blocked_reason(stage: str, states: dict[str, StageState] | None, setup_error: str | None,
                   backend_error: str | None, running: str | None) -> str | None:
    """Why the button for `stage` ("final" for Generate Final) cannot run now, or None.
    The scene stages run before any later stage (pipeline.run), so only what a run cannot
    make by itself blocks it: a run in progress, the settings, a missing backend, and the
    stages a single-stage run needs done first."""
    if running:  # the shot folder of the run in progress
        return (f"Rubble is already generating {running}: wait for it to finish, "
                "or press Esc to cancel it, then run again.")
    if setup_error:
        return setup_error
    if stage in ("final", "generate", "draft", "estimate") and backend_error:
        return backend_error
    if states is None:  # unreadable shot folder: the run itself says what is wrong
        return None
    if stage == "generate" and states["passes"].state != UP_TO_DATE:
        return f"Render the passes first (passes: {states['passes'].text})."
    if stage == "composite" and states["generate"].state != UP_TO_DATE:
        return f"Generate the frames first (generate: {states['generate'].text})."
    return None
