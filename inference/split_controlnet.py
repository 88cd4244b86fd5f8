"""Split inference for the ControlNets: their forward run over chunks of frames.

diffusers' enable_free_noise_split_inference() wraps the UNet's resnets, attentions and samplers in
SplitInferenceModule (chunks of `temporal_split_size` along the batch of frames) but not the
ControlNets, which then run every step over all frames x 2 (classifier-free guidance) at once; their
conditioning embedding works at full resolution, so they set the peak memory of a long shot (a
64-frame shot at 512x320 on the tiny model: 2.3 GiB above the loaded model, against 0.6 GiB at 16
frames; bench/inference_cpu.py memory). A ControlNetModel treats every batch item on its own (2D
convolutions, group norms and attention per image), so running it chunk by chunk gives the same
residuals up to float rounding: not bit for bit on the CPU, where oneDNN/MKL pick matmul kernels by
batch size (the time embedding's Linear already differs by 1.2e-7); the frames stay within one 8-bit
level of the plain diffusers call (tests/inference/test_long_shot.py).

The residuals are written into tensors allocated once at full length rather than concatenated, so
the peak is those outputs plus one chunk's activations, not twice the outputs. The conditioning videos
stay compact (inference/conditioning_video.py) and each chunk's float frames are made for that chunk.
"""

import inspect

from . import conditioning_video

# Keyword arguments of ControlNetModel.forward that carry one entry per batch item (frame).
PER_FRAME = ("sample", "timestep", "encoder_hidden_states", "controlnet_cond", "class_labels", "timestep_cond",
             "attention_mask")


def enable(pipe, split_size: int) -> None:
    """Run each of the pipeline's ControlNets over `split_size` frames at a time, their conditioning
    made float per chunk (idempotent)."""
    conditioning_video.install(pipe)
    controlnet = pipe.controlnet
    for net in getattr(controlnet, "nets", [controlnet]):
        if getattr(net, "_rubble_split_size", None) is None:
            plain = net.forward
            net.forward = _split_forward(net, plain, inspect.signature(plain))
        net._rubble_split_size = split_size


def _split_forward(net, plain, signature):
    import torch

    def forward(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        arguments = bound.arguments
        batch = arguments["sample"].shape[0]
        size = net._rubble_split_size
        cond = arguments["controlnet_cond"]
        compact = isinstance(cond, conditioning_video.Video)
        if compact and len(cond) != batch:
            raise ValueError(f"the conditioning video has {len(cond)} batch items, the ControlNet's input {batch}")
        if batch <= size:
            return plain(**{**arguments, "controlnet_cond": cond.batch(0, batch)}) if compact else plain(*args, **kwargs)
        per_frame = [name for name in PER_FRAME
                     if isinstance(arguments.get(name), torch.Tensor) and arguments[name].ndim > 0
                     and arguments[name].shape[0] == batch]
        return_dict = arguments.get("return_dict", True)
        down, mid = None, None
        for start in range(0, batch, size):
            chunk = {**arguments, **{name: arguments[name][start : start + size] for name in per_frame},
                     "return_dict": False}
            if compact:
                chunk["controlnet_cond"] = cond.batch(start, min(start + size, batch))
            chunk_down, chunk_mid = plain(**chunk)
            if down is None:  # allocated once, at full length, from the first chunk's shapes
                down = [r.new_empty((batch, *r.shape[1:])) for r in chunk_down]
                mid = chunk_mid.new_empty((batch, *chunk_mid.shape[1:]))
            for whole, part in zip(down, chunk_down):
                whole[start : start + size] = part
            mid[start : start + size] = chunk_mid
            del chunk_down, chunk_mid
        if not return_dict:
            return tuple(down), mid
        from diffusers.models.controlnets.controlnet import ControlNetOutput

        return ControlNetOutput(down_block_res_samples=tuple(down), mid_block_res_sample=mid)

    return forward
