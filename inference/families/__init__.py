"""Model families: one module per family, chosen by the preset's `[model] family`.

A family module turns a shot's control maps into window frames and records (windows/), and
shares everything else with the others: the window planner (long_shot), progress events
(protocol), cancel, resume (window records), provenance, fetch and doctor. It provides:

- `LATENT_CHANNELS`, `VAE_SCALE_FACTOR`: the shape of its initial latents (noise_warp);
- `run(shot, spec, device, selected, cancel, pipe=None) -> {"generated": [...], "skipped": [...]}`;
- `stale_windows(shot, records) -> [index, ...]`: windows whose inputs changed since.

and, where it differs from AnimateDiff's, optionally:

- `real_spec(model)`, `tiny_spec(tiny_dir, model)`: its repositories and their file lists (models.py,
  hence fetch and doctor), and its tiny random-weight model;
- `FRAMES_PER_LATENT`: its VAE's temporal compression (long_shot.plan keeps windows on latent frames);
- `shot_latents(shot)`: the shot's initial latents when they are not one latent frame per frame;
- `CONTROL_MODELS = False`: the base model reads the control maps itself (no ControlNet per control).

Adding a family is one new module here and one entry in FAMILIES (as diffusers' pipelines/
registry maps a name to a module), nothing else.
"""

import importlib
from types import ModuleType

from ..protocol import BackendError

# Preset name -> module in this package (imported on first use: a family's imports can be heavy).
FAMILIES = {
    "animatediff-controlnet": "animatediff_controlnet",
    "wan-vace": "wan_vace",
}


def names() -> list[str]:
    return sorted(FAMILIES)


def get(name: str) -> ModuleType:
    """The module of family `name`; an unknown family is refused with the list of known ones."""
    if name not in FAMILIES:
        raise BackendError(
            "unknown_family",
            f"Model family {name!r} is not known; known families: {', '.join(names())}.",
            "Set [model] family in the preset to one of those.",
        )
    return importlib.import_module(f"{__name__}.{FAMILIES[name]}")
