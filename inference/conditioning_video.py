"""The ControlNets' conditioning videos, kept compact for the whole call and made float one chunk at a time.

diffusers' AnimateDiffControlNetPipeline.prepare_video turns each control video into float32 at full
length and then doubles it for classifier-free guidance (`torch.cat([video] * 2)`), and the float32
frames handed in stay alive for the call too: 36 bytes per pixel per control for the whole shot, 5.6 MiB
a frame at 512x320. A 64-frame shot at that size with one control held 375 MiB of its 1,551 MiB peak that
way (bench/inference_cpu.py memory, tiny model, RSS per phase). Here each control's frames stay as read
(families/common.py control_frames: 8-bit RGB, or depth's float grey: 3 or 4 bytes per pixel), once,
and the split ControlNet forward (inference/split_controlnet.py) asks for the float32 frames of its
chunk of the guidance batch only.

Those values are exactly what prepare_video holds: its image processor passes float frames through
unchanged (numpy -> torch, a nearest resize to the same size, no normalisation: do_normalize=False),
and `uint8 / 255` is computed in float32 on both sides (tested against prepare_video itself).

No import at module level: long_shot imports this (through split_controlnet), and `doctor` reads
long_shot where numpy may be missing.
"""


class Frames(list):
    """One control's frames as `control_frames` reads them; handed to the pipeline in place of float frames.
    A list, as the pipeline's check_inputs wants one entry per frame."""


class Video:
    """What prepare_video returns for `Frames`: the guidance batch (`repeats` copies of the frames, as
    `torch.cat([video] * 2)` lays them out) without holding it; `batch(start, stop)` makes a slice of it."""

    def __init__(self, frames: Frames, repeats: int, device, dtype):
        self.frames, self.repeats, self.device, self.dtype = frames, repeats, device, dtype

    def __len__(self) -> int:
        return len(self.frames) * self.repeats

    def batch(self, start: int, stop: int):
        """Batch items start..stop-1 as prepare_video would hold them: (n, 3, H, W), contiguous (the
        ControlNet's convolutions may round differently on other strides), float32 cast to `dtype` on `device`."""
        import numpy as np
        import torch

        from .families.common import as_float

        count = len(self.frames)
        pixels = np.stack([as_float(self.frames[i % count]) for i in range(start, stop)])
        return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous().to(device=self.device, dtype=self.dtype)


def install(pipe) -> None:
    """Let the pipeline's prepare_video take `Frames` (idempotent); other inputs go to diffusers' own."""
    if getattr(pipe, "_rubble_compact_conditioning", False):
        return
    plain = pipe.prepare_video

    def prepare_video(video, width, height, batch_size, num_videos_per_prompt, device, dtype,
                      do_classifier_free_guidance=False, guess_mode=False):
        if not isinstance(video, Frames):
            return plain(video, width, height, batch_size, num_videos_per_prompt, device, dtype,
                         do_classifier_free_guidance, guess_mode)
        if num_videos_per_prompt != 1 or batch_size != len(video):
            raise ValueError(f"compact conditioning is one video of {len(video)} frames per prompt, "
                             f"not {batch_size} x {num_videos_per_prompt}")
        if video[0].shape[:2] != (height, width):  # prepare_video would resize them; ours are at the size already
            raise ValueError(f"conditioning frames are {video[0].shape[1]}x{video[0].shape[0]}, not {width}x{height}")
        return Video(video, 2 if do_classifier_free_guidance and not guess_mode else 1, device, dtype)

    pipe.prepare_video = prepare_video
    pipe._rubble_compact_conditioning = True


def installed(pipe) -> bool:
    """Whether `pipe` takes `Frames` (a sibling made with from_pipe, the video-to-video one, does not)."""
    return getattr(pipe, "_rubble_compact_conditioning", False)
