"""Stage `passes`: Cycles renders the data passes + a clay pass into multilayer EXR.

Cycles works headless on CPU and GPU. Nothing is normalised here: the EXR keeps raw
float depth, world normals, pixel motion and object indices (docs/contract.md).
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import bpy

from ..core.files import write_json_atomic
from ..core.preset import Preset

CLAY_MATERIAL = "Rubble Clay"
# [render] pass_codec -> Blender's ImageFormatSettings.exr_codec.
PASS_CODECS = {"none": "NONE", "rle": "RLE", "zip": "ZIP"}


def clay_material() -> bpy.types.Material:
    mat = bpy.data.materials.get(CLAY_MATERIAL) or bpy.data.materials.new(CLAY_MATERIAL)
    if mat.node_tree is None:  # Blender 4.x; 5.0 always gives materials a node tree
        mat.use_nodes = True
    mat.diffuse_color = (0.6, 0.6, 0.6, 1.0)
    bsdf = mat.node_tree.nodes.get("Principled BSDF") if mat.node_tree else None
    if bsdf is not None:
        bsdf.inputs["Base Color"].default_value = (0.6, 0.6, 0.6, 1.0)
        bsdf.inputs["Roughness"].default_value = 0.9
    return mat


def render_device() -> dict:
    """GPU when Cycles has one configured in the preferences (a compute backend such as
    CUDA, OptiX, HIP, oneAPI or Metal, and one of its devices enabled and present:
    Cycles' own `has_active_device`, which its Render panel uses too), CPU otherwise."""
    addon = bpy.context.preferences.addons.get("cycles")
    prefs = addon.preferences if addon is not None else None
    backend = prefs.get_compute_device_type() if prefs is not None else "NONE"
    if prefs is not None and backend != "NONE" and prefs.has_active_device():
        gpus = [d.name for d in prefs.devices if d.use and d.type == backend]
        return {"device": "GPU", "compute_device_type": backend, "gpus": gpus}
    return {"device": "CPU", "compute_device_type": backend, "gpus": []}


def write_device_record(shot_dir: Path, first: int, last: int, frames: list[int], device: dict) -> Path:
    """Which device rendered which frames, one file per chunk (chunks may run on
    different machines at once): docs/contract.md, `logs/passes-FFFF-LLLL.json`."""
    path = Path(shot_dir) / "logs" / f"passes-{first:04d}-{last:04d}.json"
    write_json_atomic(path, {**device, "frames": frames, "host": platform.node(),
                             "blender": bpy.app.version_string})
    return path


def configure(scene: bpy.types.Scene, preset: Preset) -> dict:
    """Set the scene up for the data passes; returns `render_device()`'s choice."""
    render = scene.render
    render.engine = "CYCLES"
    scene.cycles.samples = preset.render.samples
    # Keep Cycles' scene (meshes, BVH) between frames: only the fragments' transforms change, so
    # re-exporting 1,000+ meshes every frame was ~0.4 CPU-s of each frame (bench/bench_passes.py).
    render.use_persistent_data = True
    # One sun and the sky light the clay: the light tree (for scenes of many lights) only costs its
    # build, and with persistent data the BVH is refitted each frame (only transforms move), where
    # spatial splits only slow its build (Cycles' debug_bvh_type / debug_use_spatial_splits).
    scene.cycles.use_light_tree = False
    scene.cycles.debug_use_spatial_splits = False
    scene.cycles.debug_bvh_type = "DYNAMIC_BVH"
    device = render_device()
    scene.cycles.device = device["device"]
    render.resolution_x, render.resolution_y = preset.shot.resolution
    render.resolution_percentage = 100
    # The Vector pass is zero when motion blur is on (Blender manual, "Render Passes").
    render.use_motion_blur = False
    scene.view_settings.view_transform = "Standard"
    layer = scene.view_layers[0]
    layer.use_pass_z = True
    layer.use_pass_normal = True
    layer.use_pass_vector = True
    layer.use_pass_object_index = True
    layer.material_override = clay_material()
    configure_denoising(scene, layer, preset.render.denoise)
    settings = render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.0: must come before file_format
        settings.media_type = "MULTI_LAYER_IMAGE"
    settings.file_format = "OPEN_EXR_MULTILAYER"
    # "16" makes only the colour pass (Combined, the clay preview) half float: Blender writes
    # Depth, Normal, Vector and Object Index as float32 whatever this says (checked on 4.2 and
    # 5.0, tests/addon/test_passes.py). The codec: [render] pass_codec, lossless whichever.
    settings.color_depth = "16"
    settings.exr_codec = PASS_CODECS[preset.render.pass_codec]
    return device


def configure_denoising(scene: bpy.types.Scene, layer: bpy.types.ViewLayer, denoise: bool) -> None:
    """OpenImageDenoise on the Combined (clay) pass, the only pass Cycles denoises: Depth, Normal,
    Vector and Object Index are written as traced. Cycles then also writes the clay before
    denoising ("Noisy Image"). Quality FAST and the colour alone measured closest to a 64-sample
    clay for their cost (README "Passes stage"): the clay's albedo is one grey everywhere, so the
    albedo and normal guides cost time and told the denoiser nothing (31.8 dB with them, 32.3
    without; BALANCED with them 32.0 dB for +0.15 CPU-s a frame)."""
    scene.cycles.use_denoising = denoise
    if not denoise:
        return
    import _cycles  # Cycles' own module: whether this Blender was built with OpenImageDenoise

    if not _cycles.with_openimagedenoise:
        raise RuntimeError("This Blender has no OpenImageDenoise, which [render] denoise = true needs: set "
                           "denoise = false in the preset (and samples = 8 or more for a clean clay pass).")
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.cycles.denoising_input_passes = "RGB"
    scene.cycles.denoising_prefilter = "NONE"  # it filters the guides, and there are none
    scene.cycles.denoising_quality = "FAST"
    scene.cycles.denoising_use_gpu = False  # one denoiser (the CPU's) whichever device renders
    layer.cycles.use_denoising = True


def render_frame(scene: bpy.types.Scene, frame: int, path: Path) -> None:
    """Render one frame to `path`, written to a temporary name first so a crash or
    Cancel never leaves a truncated EXR that looks finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.exr")
    scene.frame_set(frame)
    # The shot's scene must be the context scene: render.render(scene=...) of another scene
    # sets the rendered scene to the context scene's current frame, so an artist's file
    # would get frame 1 (or whatever its own scene shows) for every pass.
    with bpy.context.temp_override(scene=scene):
        bpy.ops.render.render()  # raises RuntimeError when Blender reports a render error
    # Saving the result writes the same file as write_still did (same parts, channels, codec and
    # pixels: tests/addon/test_passes.py) for ~0.05 CPU-s less per frame at 1,100 fragments
    # (median of repeated renders; write_still also needed scene.render.filepath set per frame).
    result = next((image for image in bpy.data.images if image.type == "RENDER_RESULT"), None)
    if result is None:
        raise RuntimeError(f"Blender rendered no image for frame {frame}; see Blender's log above.")
    result.save_render(str(tmp), scene=scene)
    if not tmp.exists():
        raise RuntimeError(f"Cycles did not write {tmp}; see Blender's log above.")
    os.replace(tmp, path)
