"""Image detectors from controlnet-aux, run on the clay render: further control kinds.

canny: OpenCV's Canny edges through controlnet-aux's CannyDetector, no weights.
lineart: controlnet-aux's LineartDetector (Informative Drawings, Chan et al. CVPR 2022, as
lllyasviel's ControlNet 1.1 annotator uses it); its two weight files come from the Hugging Face
cache only, never downloaded: when absent the stage stops with the same `missing_weights` error
as the models.

Each map depends on its frame's clay render alone (fixed thresholds, eval-mode network, CPU
float32), so a frame's map is the same in any chunk and on any rerun. Maps are 8-bit grey at
the pass resolution, white lines on black, as the ControlNets were trained on.
"""

import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np

from .protocol import BackendError

KINDS = ("canny", "lineart")
# controlnet-aux's CannyDetector defaults, the thresholds of lllyasviel's canny2image demo.
CANNY_THRESHOLDS = (100, 200)
# lllyasviel/Annotators holds the ControlNet 1.1 annotators' weights; sk_model.pth is the fine
# line model, sk_model2.pth the coarse one (LineartDetector loads both).
BLOCK = 64  # controlnet-aux's detectors work on sizes that are multiples of 64
LINEART_WEIGHTS = ("lllyasviel/Annotators", "main", ("sk_model.pth", "sk_model2.pth"))


def kinds_of(shot) -> list[str]:
    """The detector kinds the shot's [[controls]] use, in preset order."""
    return [c.kind for c in shot.model.controls if c.kind in KINDS]


def check(shot) -> None:
    """Refuse before any pass is read when a detector's weights are not on this machine."""
    for kind in kinds_of(shot):
        if kind == "lineart":
            _lineart_directory()


def missing_weights(controls) -> list[str]:
    """'id@revision: file' for each detector weight file the controls need and this machine lacks."""
    if not any(c.kind == "lineart" for c in controls):
        return []
    from huggingface_hub import try_to_load_from_cache

    repo, revision, filenames = LINEART_WEIGHTS
    return [f"{repo}@{revision}: {name}" for name in filenames
            if not isinstance(try_to_load_from_cache(repo, name, revision=revision), str)]


def detect(kind: str, clay: np.ndarray) -> np.ndarray:
    """The `kind` map (uint8, H x W) of one clay frame (uint8 sRGB, H x W x 3)."""
    height, width = clay.shape[:2]
    # controlnet-aux resizes its input so that the short side is the detect resolution and both
    # sides are multiples of 64 (util.resize_image), which would squash a 48 x 64 frame to 64 x 64
    # and lose edges on the way back. Padded (edge pixels repeated: no new edges) to multiples of
    # 64 and detected at that short side, nothing is resized; the padding is cropped off after.
    padded = np.pad(clay, ((0, -height % BLOCK), (0, -width % BLOCK), (0, 0)), mode="edge")
    resolution = min(padded.shape[:2])
    if kind == "canny":
        found = _aux("canny").CannyDetector()(padded, *CANNY_THRESHOLDS, detect_resolution=resolution,
                                               image_resolution=resolution, output_type="np")
    elif kind == "lineart":
        found = _lineart()(padded, detect_resolution=resolution, image_resolution=resolution, output_type="np")
    else:
        raise ValueError(f"{kind!r} is not a detector kind ({', '.join(KINDS)})")
    return np.ascontiguousarray(found[:height, :width, 0])


def _aux(name: str):
    """controlnet_aux.<name> without the package's __init__, which imports all 18 detectors and their
    dependencies (8 s on two cores, against 2 s for torch and the two used here)."""
    if "controlnet_aux" not in sys.modules:
        spec = importlib.util.find_spec("controlnet_aux")
        if spec is None:
            raise BackendError("missing_package", "controlnet-aux is not installed in the backend environment.",
                               "Reinstall the backend: pip install -r requirements/inference.txt")
        package = types.ModuleType("controlnet_aux")
        package.__path__, package.__spec__ = list(spec.submodule_search_locations), spec
        sys.modules["controlnet_aux"] = package
    return importlib.import_module(f"controlnet_aux.{name}")


def _lineart_directory() -> str:
    """The cache snapshot holding both lineart weight files, or a missing_weights error."""
    from huggingface_hub import constants, try_to_load_from_cache

    repo, revision, filenames = LINEART_WEIGHTS
    found = {name: try_to_load_from_cache(repo, name, revision=revision) for name in filenames}
    missing = [name for name, path in found.items() if not isinstance(path, str)]
    if missing:
        raise BackendError(
            "missing_weights",
            f"The lineart detector's weights are not on this machine; missing: {repo}@{revision}: "
            f"{', '.join(missing)}.",
            f"Download them on a machine with network access (hf download {repo} {' '.join(filenames)} "
            f"--revision {revision}) into the Hugging Face cache ({constants.HF_HUB_CACHE}; set HF_HOME to move "
            "it), or use another control kind in the preset's [[controls]]. Rubble never downloads.",
        )
    directories = {str(Path(path).parent) for path in found.values()}
    if len(directories) != 1:  # both files of one snapshot, never a mix of two revisions
        raise BackendError("missing_weights", f"The lineart weights in the cache are from different snapshots: "
                           f"{sorted(directories)}.", f"Download both again: hf download {repo} {' '.join(filenames)}")
    return directories.pop()


@functools.cache
def _lineart():
    # From a directory: controlnet-aux then makes no hub call. Eval mode, CPU float32.
    return _aux("lineart").LineartDetector.from_pretrained(_lineart_directory()).to("cpu")
