"""Control maps derived from the raw passes (docs/contract.md, "What the backend derives").

Depth: disparity 1/z, normalised once per shot over all frames (per-frame normalisation
flickers), near = bright, background black, 16-bit grey. Normal: camera space, in the
normalbae colour convention the SD1.5 normal ControlNet was trained on. Clay: an sRGB preview.
Flow, occlusion and disocclusion from the Vector pass (flow.py), one mask per role from the Object Index
pass (masks.py).
"""

import ctypes
import functools
import json
import multiprocessing as mp
import os
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import threadpoolctl
from PIL import Image

from . import __version__, detectors, files, flow, masks, passes, protocol
from .shot import Shot

STATS_SCHEMA = "rubble.control-stats/1"
# Blender writes ~1e10 where no surface was hit (docs/contract.md); anything this far is sky.
BACKGROUND_DEPTH = 1e9
# Robust range: a few stray near pixels (debris in front of the lens) must not crush the rest.
PERCENTILES = (1.0, 99.0)
# The streaming histogram of disparity (DisparityHistogram): depth 1 mm to 1e8 units, bins a
# factor 1 + 2e-5 wide -> 1.27 M bins; a percentile is then within a relative 1e-5.
DISPARITY_RANGE = (1e-8, 1e3)
BIN_RATIO = 2e-5
LOG_BIN = float(np.log1p(BIN_RATIO))
BINS = int(np.ceil(np.log(DISPARITY_RANGE[1] / DISPARITY_RANGE[0]) / LOG_BIN))
PERCENTILE_RELATIVE_ERROR = 1e-5
KINDS = ("depth", "normal", "clay")
# The normal map's colour of the normal (0, 0, 1): round(((1 - 0) / 2, (0 + 1) / 2, (1 + 1) / 2) * 255),
# halves rounded to even as np.round does.
FACING_CAMERA_RGB = (128, 128, 255)
# How each kind of map is written (files.write_png_pixels): (row filter, zlib level). The filter
# per kind is the fastest of none/sub/up at a size within 20 % of the smallest; masks and
# occlusion are long runs of 0 and 255, which "up" turns into zeros. The clay is stored (level 0):
# its render noise leaves deflate little to find (level 1: half the size for 1.2 ms a frame at
# 512x288, more than all the other maps' deflating together), so it takes 0.44 MB a frame
# (README "Speed of the passes and control stages", bench/bench_control.py).
PNG_SETTINGS = {"depth": ("up", 1), "normal": ("none", 1), "clay": ("none", 0), "binary": ("up", 1),
                "detector": ("up", 1)}


@dataclass(frozen=True)
class DepthStats:
    disparity_low: float  # maps to 0 (far foreground)
    disparity_high: float  # maps to 1 (near)


def map_path(shot: Shot, kind: str, frame: int) -> Path:
    return shot.directory / "control" / kind / f"{frame:04d}.png"


def flow_path(shot: Shot, direction: str, frame: int) -> Path:
    return shot.directory / "control" / "flow" / direction / f"{frame:04d}.npy"


def occlusion_path(shot: Shot, frame: int) -> Path:
    return shot.directory / "control" / "flow" / "occlusion" / f"{frame:04d}.png"


def disocclusion_path(shot: Shot, frame: int) -> Path:
    return shot.directory / "control" / "flow" / "disocclusion" / f"{frame:04d}.png"


def mask_path(shot: Shot, role: str, frame: int) -> Path:
    return shot.directory / "control" / "mask" / role / f"{frame:04d}.png"


def roles(shot: Shot) -> list[str]:
    return masks.role_names(shot.roles, bool(shot.fragments) or any(shot.moved.values()))


def frame_outputs(shot: Shot, frame: int) -> list[Path]:
    """Every file the control stage writes for `frame`."""
    return [
        *(map_path(shot, kind, frame) for kind in KINDS),
        *(map_path(shot, kind, frame) for kind in detectors.kinds_of(shot)),
        flow_path(shot, "forward", frame),
        flow_path(shot, "backward", frame),
        occlusion_path(shot, frame),
        disocclusion_path(shot, frame),
        *(mask_path(shot, role, frame) for role in roles(shot)),
    ]


def derive(shot: Shot, frames: list[int]) -> list[Path]:
    """Write the control maps of `frames`, normalised with the whole shot's statistics.

    Each EXR is decoded once. When control/stats.json matches the passes, frames whose maps
    exist are skipped (resume) and the others are written in one pass. Otherwise the statistics
    need every frame of the shot before any depth map can be normalised, so one pass over the
    shot accumulates the disparity histogram and writes the other maps of `frames`; a second pass
    writes their depth maps, reading Depth again from an uncompressed pass (its part alone), or
    from the float32 disparity the first pass kept for a compressed one (one file per worker's run
    under control/, deleted after; float16 would cost the 16-bit depth map ~5 bits): decoding it
    again would cost more. Both passes run in worker processes, one run of consecutive frames each
    (see `worker_count`).
    """
    detectors.check(shot)  # missing detector weights: stop before any work
    stats_path = shot.directory / "control" / "stats.json"
    method = {
        "percentiles": list(PERCENTILES),
        "background_depth": BACKGROUND_DEPTH,
        "histogram": {"disparity_range": list(DISPARITY_RANGE), "bin_ratio": BIN_RATIO},
        "code": __version__,
    }
    saved = json.loads(stats_path.read_text(encoding="utf-8")) if stats_path.is_file() else {}
    source = None  # the passes' fingerprints: taken here only to compare with saved statistics, else by the workers
    if saved.get("method") == method:
        present = [f for f in shot.frames if shot.pass_path(f).is_file()]
        with ThreadPoolExecutor(worker_count(len(present))) as threads:  # reading lets go of the GIL
            source = dict(zip(map(str, present), threads.map(files.fingerprint_file, map(shot.pass_path, present))))
    if source is not None and saved.get("passes_xxh3_128") == source:
        todo = [f for f in frames if not all(p.is_file() for p in frame_outputs(shot, f))]
        if not todo:
            protocol.progress("control", len(frames), len(frames), "every frame up to date")
            return []
        with _Workers(len(todo)) as pool:
            runs = pool.run("control", _maps_with_stats, shot, todo, DepthStats(**saved["depth"]))
        return [path for paths in runs for path in paths]

    spill = shot.directory / "control" / f".disparity.{os.getpid()}"
    spill.mkdir(parents=True, exist_ok=True)
    try:
        with _Workers(len(shot.frames)) as pool:
            chunks = pool.run("control_stats", _maps_and_histogram, shot, shot.frames, set(frames), spill)
            histogram = DisparityHistogram()
            written, source, spilled = [], {}, {}
            for sparse, paths, hashes, where in chunks:
                histogram.merge(sparse)
                written += paths
                source.update(hashes)
                spilled.update(where)
            # Other passes or code: every older map is stale (and maps made with other stats would mix
            # two normalisations in one shot). Deleted only once every pass has been read, so a damaged
            # pass file stops the run with the maps already written still there.
            fresh = set(written)
            control = shot.directory / "control"
            for pattern in [f"{kind}/*.png" for kind in KINDS + detectors.KINDS] + ["flow/*/*.npy", "flow/*/*.png",
                                                                                 "mask/*/*.png"]:
                for stale in control.glob(pattern):
                    if stale not in fresh:
                        stale.unlink()
            stats = depth_stats(histogram)
            files.write_json(
                stats_path,
                {
                    "schema": STATS_SCHEMA,
                    "depth": {"disparity_low": stats.disparity_low, "disparity_high": stats.disparity_high},
                    "method": method,
                    "passes_xxh3_128": source,
                },
            )
            written += [path for paths in pool.run("control", _depth_maps, shot, frames, spilled, stats) for path in paths]
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return written


def worker_count(frames: int) -> int:
    """Worker processes for `frames` frames: $RUBBLE_CONTROL_WORKERS, else one per CPU core this
    process may use, never more than the frames. Decoding an EXR and encoding a PNG hold the GIL
    (OpenEXR's and Pillow's Python bindings), so threads would not run them side by side."""
    wanted = os.environ.get("RUBBLE_CONTROL_WORKERS", "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(int(wanted) if wanted.strip() else cores, frames))


def _split(frames: list[int], parts: int) -> list[list[int]]:
    """Consecutive runs of frames: a frame's occlusion needs the next frame, which a run reads once."""
    bounds = np.linspace(0, len(frames), parts + 1).round().astype(int)
    return [frames[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


class _Workers:
    """Runs a function on consecutive runs of frames, in this process for one worker, else in a
    process pool. Progress counts frames across the workers through one shared counter."""

    def __init__(self, frames: int):
        self.count = worker_count(frames)
        # fork on Linux: no re-import per worker; elsewhere the platform's default (spawn).
        self.context = mp.get_context("fork" if sys.platform == "linux" else None)
        self.done = self.context.Value("i", 0)
        self.pool = None

    def __enter__(self):
        # A pool even for one worker where workers fork (no re-import): its process can keep its
        # freed memory (_keep_freed_memory) and this one does not. Elsewhere one worker runs here.
        if self.count > 1 or self.context.get_start_method() == "fork":
            self.pool = ProcessPoolExecutor(self.count, mp_context=self.context,
                                            initializer=_init_worker, initargs=(self.done, True))
        else:
            _init_worker(self.done)
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown()

    def run(self, stage: str, work, shot: Shot, frames: list[int], *args) -> list:
        """work(shot, run, total, stage, *args) per run; the results in frame order. The first
        run that fails (the earliest frames) raises its BackendError once every run has ended."""
        with self.done.get_lock():
            self.done.value = 0
        runs = _split(frames, self.count)
        if self.pool is None:
            return [work(shot, run, len(frames), stage, *args) for run in runs]
        futures = [self.pool.submit(_in_worker, work, shot, run, len(frames), stage, *args) for run in runs]
        results = [future.result() for future in futures]
        for result in results:
            if isinstance(result, _Failure):
                raise protocol.BackendError(result.code, result.message, result.hint)
        return results


@dataclass(frozen=True)
class _Failure:  # a BackendError from a worker (it does not pickle: its __init__ takes three arguments)
    code: str
    message: str
    hint: str


_done = None  # the pool's shared frame counter, set in each worker


def _init_worker(done, in_pool: bool = False) -> None:
    global _done
    _done = done
    if in_pool:
        _keep_freed_memory()
        # The workers already use every core: numpy's OpenBLAS threads (the normal map's matrix
        # product) only spin against the other worker (1.5 ms of CPU a frame at 512x288).
        threadpoolctl.threadpool_limits(1, user_api="blas")


# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4


def _keep_freed_memory() -> None:
    """Have glibc's malloc keep the memory a worker frees for its next frame. By default every
    buffer over 32 MB (a 1280x720 pass file is 48 MB) and every freed heap top is handed back to
    the kernel, and the next frame pays to have it mapped and zeroed again: at 1280x720 that was
    70 ms of system time a frame, half the stage (bench/bench_control.py). Only in the pool's own
    processes, which end with the stage: the command's process keeps glibc's defaults."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_MAX, 0)
        libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
    except (OSError, AttributeError, TypeError):  # not glibc (Windows: no CDLL(None)): its defaults
        pass


def _in_worker(work, *args):
    try:
        return work(*args)
    except protocol.BackendError as exc:
        return _Failure(exc.code, exc.message, exc.hint)


def _frame_done(stage: str, total: int, frame: int) -> None:
    with _done.get_lock():  # one line at a time, numbered in the order frames finish
        _done.value += 1
        protocol.progress(stage, _done.value, total, f"frame {frame}")


def _maps_and_histogram(shot: Shot, run: list[int], total: int, stage: str, wanted: set[int], spill: Path):
    """First pass over a run of the shot's frames: its disparity histogram, every map but depth for
    the wanted frames, the disparity of those read from compressed passes spilled to one file in
    `spill` (where each frame is in it; None: read Depth again from the pass), the fingerprint of
    each pass file (from the bytes read for the maps). The run's last frame's occlusion reads the
    next frame's passes (another run's) when there is one, its first frame's disocclusion the
    previous frame's."""
    histogram = DisparityHistogram()
    written, hashes, spilled = [], {}, {}
    with open(spill / f"{run[0]:04d}.f32", "wb") as spill_file:
        waiting = None  # (frame, forward flow) of the last wanted frame: its occlusion needs the next frame
        previous = None  # (frame, forward flow) of the frame read last: the disocclusion of the next one needs it
        for frame in run:
            frame_passes = passes.read(shot.pass_path(frame), frame, with_fingerprint=True)
            hashes[str(frame)] = frame_passes.fingerprint
            histogram.add(frame_passes.depth)
            forward, backward = flow.forward(frame_passes.vector), flow.backward(frame_passes.vector)  # once a frame
            if waiting is not None and waiting[0] == frame - 1:
                written.append(_write_occlusion(shot, *waiting, backward))
            waiting = None
            if frame in wanted:
                written += _write_frame_maps(shot, frame, frame_passes, forward, backward)
                waiting = (frame, forward)
                if frame_passes.uncompressed:  # the second pass reads Depth again, cheaper than a spill
                    spilled[frame] = None
                else:
                    values = disparity(frame_passes.depth)
                    spilled[frame] = (spill_file.name, spill_file.tell(), values.shape)
                    values.tofile(spill_file)
                before = previous[1] if previous is not None else _previous_forward(shot, frame)
                written.append(_write_disocclusion(shot, frame, backward, before))
            previous = (frame, forward)
            _frame_done(stage, total, frame)
        if waiting is not None:
            frame = waiting[0]
            after = flow.backward(passes.read(shot.pass_path(frame + 1), frame + 1).vector) if frame < shot.frame_end else None
            written.append(_write_occlusion(shot, *waiting, after))
    return histogram.sparse(), written, hashes, spilled


def _depth_maps(shot: Shot, run: list[int], total: int, stage: str, spilled: dict, stats: DepthStats) -> list[Path]:
    written = []
    for frame in run:
        path = map_path(shot, "depth", frame)
        if spilled[frame] is None:
            values = disparity(passes.read_depth(shot.pass_path(frame), frame))
        else:
            name, offset, shape = spilled[frame]
            values = np.fromfile(name, np.float32, count=shape[0] * shape[1], offset=offset).reshape(shape)
        write_map(path, depth_image_from_disparity(values, stats), "depth")
        written.append(path)
        _frame_done(stage, total, frame)
    return written


def _maps_with_stats(shot: Shot, run: list[int], total: int, stage: str, stats: DepthStats) -> list[Path]:
    """Known statistics: read each frame of the run once and write all its maps.

    A frame's occlusion needs the next frame's backward flow and its disocclusion the previous
    frame's forward flow; at the ends of a run (or of a chunk) those frames' passes are read for it.
    """
    written = []
    ahead = {}  # the next frame's (passes, backward flow), read for an occlusion: reused when that frame is derived next
    previous = None  # (frame, forward flow) of the frame derived last: the next one's disocclusion needs it
    for frame in run:
        frame_passes, backward = ahead.pop(frame, None) or _read_with_backward(shot, frame)
        forward = flow.forward(frame_passes.vector)
        path = map_path(shot, "depth", frame)
        write_map(path, depth_image(frame_passes.depth, stats), "depth")
        written += [path, *_write_frame_maps(shot, frame, frame_passes, forward, backward)]
        before = previous[1] if previous is not None and previous[0] == frame - 1 else _previous_forward(shot, frame)
        written.append(_write_disocclusion(shot, frame, backward, before))
        after = None
        if frame < shot.frame_end:
            ahead = {frame + 1: _read_with_backward(shot, frame + 1)}
            after = ahead[frame + 1][1]
        written.append(_write_occlusion(shot, frame, forward, after))
        previous = (frame, forward)
        _frame_done(stage, total, frame)
    return written


def _read_with_backward(shot: Shot, frame: int) -> tuple[passes.FramePasses, np.ndarray]:
    frame_passes = passes.read(shot.pass_path(frame), frame)
    return frame_passes, flow.backward(frame_passes.vector)


def _previous_forward(shot: Shot, frame: int) -> np.ndarray | None:
    """Frame - 1's forward flow, read for `frame`'s disocclusion; None for the shot's first frame."""
    if frame <= shot.frame_start:
        return None
    return flow.forward(passes.read(shot.pass_path(frame - 1), frame - 1).vector)


def _write_frame_maps(shot: Shot, frame: int, frame_passes: passes.FramePasses, forward: np.ndarray,
                      backward: np.ndarray) -> list[Path]:
    """Everything but depth (needs the shot's statistics) and occlusion (needs the next frame); the
    flows are the frame's own, derived once by the caller (occlusions need them too)."""
    paths = [map_path(shot, "normal", frame), map_path(shot, "clay", frame)]
    background = frame_passes.depth >= BACKGROUND_DEPTH
    write_map(paths[0], normal_image(frame_passes.normal, shot.cameras[frame].matrix_world, background), "normal")
    clay = clay_image(frame_passes.combined)
    write_map(paths[1], clay, "clay")
    for kind in detectors.kinds_of(shot):  # canny, lineart: from the clay render (each worker loads its own)
        paths.append(map_path(shot, kind, frame))
        write_map(paths[-1], detectors.detect(kind, clay), "detector")
    for direction, values in (("forward", forward), ("backward", backward)):
        path = flow_path(shot, direction, frame)
        files.write_npy(path, values)
        paths.append(path)
    names = roles(shot)
    moved = shot.moved.get(frame, frozenset())
    for role, inside in masks.role_masks(frame_passes.object_index, shot.roles, moved, names).items():
        path = mask_path(shot, role, frame)
        write_map(path, binary_image(inside), "binary")
        paths.append(path)
    return paths


def _write_occlusion(shot: Shot, frame: int, forward: np.ndarray, next_backward: np.ndarray | None) -> Path:
    path = occlusion_path(shot, frame)
    write_map(path, binary_image(flow.occlusion(forward, next_backward)), "binary")
    return path


def _write_disocclusion(shot: Shot, frame: int, backward: np.ndarray, previous_forward: np.ndarray | None) -> Path:
    path = disocclusion_path(shot, frame)
    write_map(path, binary_image(flow.disocclusion(backward, previous_forward)), "binary")
    return path


def write_map(path: Path, pixels: np.ndarray, kind: str) -> None:
    files.write_png_pixels(path, pixels, *PNG_SETTINGS[kind])


def binary_image(inside: np.ndarray) -> np.ndarray:
    return inside.view(np.uint8) * np.uint8(255)  # 8-bit grey, 255 inside (a bool is one byte, 0 or 1)


class DisparityHistogram:
    """The shot's disparities (1/z, foreground only) in log-spaced bins, added one frame at a time.

    Each bin spans a factor (1 + BIN_RATIO) of disparity and keeps its count and the smallest and
    largest value that fell in it. A percentile is read off as np.percentile does it (linear
    interpolation between the two order statistics around the rank); an order statistic that is
    the first or last in its bin is exact, any other is its bin's geometric centre clamped to the
    bin's smallest..largest value, within a factor sqrt(1 + BIN_RATIO) of the true one. So for
    disparities inside DISPARITY_RANGE a percentile is within a relative PERCENTILE_RELATIVE_ERROR
    (1e-5) of np.percentile on all the values (exact when the values near the rank are few
    distinct ones, as on flat surfaces). In the 16-bit depth map that moves a pixel by at most
    1e-5 * high / (high - low) of the range: under one level (1/65535) unless the shot's far
    disparity is above a third of its near one. Values outside the range land in the end bins
    (still exact as a bin's extremes, not bounded otherwise). Memory: ~20 MB, whatever the shot.
    """

    def __init__(self):
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.smallest = np.full(BINS, np.inf, dtype=np.float32)
        self.largest = np.full(BINS, -np.inf, dtype=np.float32)

    def add(self, depth: np.ndarray) -> None:
        values = np.divide(1.0, depth[depth < BACKGROUND_DEPTH], dtype=np.float32)  # as disparity() computes it
        if values.size == 0:
            return
        position = values.astype(np.float64)  # the bin: floor(log(v / range low) / log bin width)
        position /= DISPARITY_RANGE[0]
        np.log(position, out=position)
        position /= LOG_BIN
        np.floor(position, out=position)
        index = position.astype(np.int64)
        np.clip(index, 0, BINS - 1, out=index)
        # A frame's disparities span a few hundred thousand bins of the 1.27 M: count over those only.
        low, high = int(index.min()), int(index.max())
        self.counts[low:high + 1] += np.bincount(index - low, minlength=high - low + 1)
        np.minimum.at(self.smallest, index, values)
        np.maximum.at(self.largest, index, values)

    def sparse(self) -> tuple[np.ndarray, ...]:
        """The filled bins only (index, count, smallest, largest): a few kB to send between processes."""
        filled = np.flatnonzero(self.counts)
        return filled, self.counts[filled], self.smallest[filled], self.largest[filled]

    def merge(self, sparse: tuple[np.ndarray, ...]) -> None:
        """Add another histogram's `sparse()`: as if its frames had been added here."""
        filled, counts, smallest, largest = sparse
        self.counts[filled] += counts
        self.smallest[filled] = np.minimum(self.smallest[filled], smallest)
        self.largest[filled] = np.maximum(self.largest[filled], largest)

    def percentiles(self, q: tuple[float, ...]) -> list[float] | None:
        total = int(self.counts.sum())
        if total == 0:
            return None
        cumulative = np.cumsum(self.counts)

        def order_statistic(rank: int) -> float:  # the rank-th smallest value (0-based)
            k = int(np.searchsorted(cumulative, rank, side="right"))
            smallest, largest = float(self.smallest[k]), float(self.largest[k])
            if rank == cumulative[k] - self.counts[k]:
                return smallest
            if rank == cumulative[k] - 1:
                return largest
            centre = DISPARITY_RANGE[0] * np.exp((k + 0.5) * LOG_BIN)
            return min(max(float(centre), smallest), largest)

        out = []
        for percent in q:
            position = percent / 100.0 * (total - 1)
            below = int(np.floor(position))
            low, high = order_statistic(below), order_statistic(min(below + 1, total - 1))
            out.append(low + (position - below) * (high - low))
        return out


def depth_stats(histogram: DisparityHistogram) -> DepthStats:
    found = histogram.percentiles(PERCENTILES)
    if found is None:
        return DepthStats(0.0, 1.0)
    low, high = found
    if high <= low:  # a single flat depth: show it as near rather than divide by zero
        low = high - 1e-6 if high > 0 else 0.0
        high = max(high, low + 1e-6)
    return DepthStats(float(low), float(high))


def disparity(depth: np.ndarray) -> np.ndarray:
    """1/z where a surface was hit, 0 for the background (float32, as the EXR's depth)."""
    foreground = depth < BACKGROUND_DEPTH
    return np.where(foreground, 1.0 / np.where(foreground, depth, 1.0), 0.0).astype(np.float32)


def normalised_disparity(values: np.ndarray, stats: DepthStats) -> np.ndarray:
    """Disparity (0 = background) scaled to [0, 1] with the shot's range, near = 1, background 0."""
    scaled = (values - stats.disparity_low) / (stats.disparity_high - stats.disparity_low)
    return np.where(values > 0, np.clip(scaled, 0.0, 1.0), 0.0).astype(np.float32)


def depth_image_from_disparity(values: np.ndarray, stats: DepthStats) -> np.ndarray:
    """uint16 levels of the 16-bit grey depth map."""
    return np.round(normalised_disparity(values, stats) * 65535.0).astype(np.uint16)


def depth_image(depth: np.ndarray, stats: DepthStats) -> np.ndarray:
    return depth_image_from_disparity(disparity(depth), stats)


def camera_space_normals(normal_world: np.ndarray, matrix_world, scale=np.float32(1.0)) -> np.ndarray:
    """n_cam = R⁻¹ n_world, R the camera's world rotation (x right, y up, z towards the viewer),
    each component times `scale`."""
    rotation = np.asarray(matrix_world, dtype=np.float64)[:3, :3]
    rotation = rotation / np.linalg.norm(rotation, axis=0)  # drop any object scale
    # R is orthonormal, so R⁻¹ = Rᵀ; for row vectors n_cam = n_world · R. float32 throughout: the
    # map has 8 bits per component, float32's rounding (~1e-7) is far below its step (1/255).
    return normal_world.astype(np.float32, copy=False) @ (rotation.astype(np.float32) * scale)


def normal_image(normal_world: np.ndarray, matrix_world, background: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    # normalbae (lllyasviel/ControlNet-v1-1-nightly, annotator/normalbae): red is flipped,
    # ((1 - x) / 2, (y + 1) / 2, (z + 1) / 2). The halving is folded into the rotation: scaling by
    # a power of two is exact in floating point, so n · (R s) = (n · R) s to the bit.
    rgb = camera_space_normals(normal_world, matrix_world, np.float32([-0.5, 0.5, 0.5]))
    rgb += np.float32(0.5)
    np.clip(rgb, 0.0, 1.0, out=rgb)
    rgb *= np.float32(255.0)
    out = np.round(rgb, out=rgb).astype(np.uint8)
    # Where no surface was hit Blender's normal is (0, 0, 0), not a unit vector; use the flat
    # normal facing the camera, (0, 0, 1) -> RGB (128, 128, 255), as the MiDaS normal annotator
    # does for its background (controlnet_aux/midas/__init__.py: x = y = 0 below bg_th, z = a).
    out[background] = FACING_CAMERA_RGB
    return out


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    # IEC 61966-2-1 sRGB transfer function.
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def clay_image(combined: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 sRGB. Blender's Combined is premultiplied by alpha, so RGB alone is the
    clay over black. A half-float pass (the passes' default) has 65,536 possible values: looked
    up in their table, made once by the same formula, so the map is the same, 5x faster."""
    if combined.dtype == np.float16:
        return _half_to_srgb8().take(combined[..., :3].view(np.uint16))
    return srgb8(combined[..., :3])


def srgb8(linear: np.ndarray) -> np.ndarray:
    return np.round(linear_to_srgb(linear.astype(np.float32, copy=False)) * 255.0).astype(np.uint8)


@functools.cache
def _half_to_srgb8() -> np.ndarray:
    every_half = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    with np.errstate(invalid="ignore"):  # the NaN bit patterns (never in a render)
        return srgb8(every_half)


def load_depth(shot: Shot, frame: int) -> np.ndarray:
    """The saved depth control map as float [0, 1]."""
    return np.asarray(Image.open(map_path(shot, "depth", frame)), dtype=np.float32) / 65535.0
