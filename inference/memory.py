"""Device, dtype and memory switches (preset `[memory]`), and what to say when the GPU runs out.

Device: CUDA, then Apple MPS, then the CPU. dtype "auto": bf16 on a CUDA GPU that supports it
(torch.cuda.is_bf16_supported(): Ampere and newer), fp16 on other GPUs and MPS, fp32 on the CPU
(CPUs lack fast fp16). Attention runs through PyTorch's scaled_dot_product_attention: diffusers'
default processor (AttnProcessor2_0) on torch 2; `attention_processors` reports it for the record.
"""

from dataclasses import asdict, dataclass

from . import protocol
from .protocol import BackendError

DEVICES = ("cuda", "mps", "cpu")
DTYPES = ("auto", "fp16", "bf16", "fp32")
OFFLOADS = ("none", "model", "sequential")
TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


@dataclass(frozen=True)
class Memory:
    dtype: str = "auto"
    vae_slicing: bool = False
    vae_tiling: bool = False
    offload: str = "none"
    split_inference: bool = True
    retry_with_offload: bool = True


def settings(table: dict | None) -> Memory:
    """The preset's [memory] table (absent in shots exported before it existed: the defaults), validated."""
    values = {**asdict(Memory()), **(table or {})}
    unknown = set(values) - set(asdict(Memory()))
    if unknown:
        raise ValueError(f"memory has unknown keys {sorted(unknown)}")
    for key in ("vae_slicing", "vae_tiling", "split_inference", "retry_with_offload"):
        if not isinstance(values[key], bool):
            raise ValueError(f"memory {key} must be true or false, got {values[key]!r}")
    result = Memory(**values)
    if result.dtype not in DTYPES:
        raise ValueError(f"memory dtype {result.dtype!r} must be one of {DTYPES}")
    if result.offload not in OFFLOADS:
        raise ValueError(f"memory offload {result.offload!r} must be one of {OFFLOADS}")
    return result


def pick_device(requested: str | None) -> str:
    """The requested device, or the best one present: CUDA, then MPS, then the CPU."""
    import torch

    present = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if requested is not None and not present[requested]:
        raise BackendError(
            "no_gpu",
            f"--device {requested} was asked for, but torch sees no {requested.upper()} device.",
            "Use --device cpu, or check the GPU driver and that a torch build for it is installed "
            "(the CUDA build on NVIDIA, the macOS arm64 build for MPS).",
        )
    return requested or next(d for d in DEVICES if present[d])


def dtype_name(device: str, memory: Memory = Memory()) -> str:
    """The torch dtype name for the weights: the preset's, or the best for the device ("auto")."""
    if memory.dtype != "auto":
        return TORCH_DTYPES[memory.dtype]
    if device == "cuda":
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float16" if device == "mps" else "float32"


def apply(pipe, memory: Memory, device: str, offload: str | None = None):
    """Put the pipeline on `device` with the preset's switches; returns it."""
    offload = memory.offload if offload is None else offload
    if memory.vae_slicing:
        pipe.enable_vae_slicing()
    if memory.vae_tiling:
        pipe.enable_vae_tiling()
    if offload == "none":
        return pipe.to(device)
    enable_offload(pipe, device, offload)
    return pipe


def enable_offload(pipe, device: str, offload: str = "model") -> None:
    """Keep the weights in CPU memory and move each model (or layer) to the device while it runs."""
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.enable_sequential_cpu_offload(device=device)


def attention_processors(pipe) -> list[str]:
    """The attention processor classes the UNet uses (AttnProcessor2_0 = PyTorch SDPA)."""
    return sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()})


def advice(memory: Memory, mode: str, retried: bool) -> str:
    """The switches not yet on that would lower peak GPU memory, most effective first."""
    steps = []
    if memory.offload == "none":
        steps.append('[memory] offload = "model" (weights wait in CPU memory; about 20 % slower)'
                     + (" — already retried with it" if retried else ""))
    if memory.offload != "sequential":
        steps.append('[memory] offload = "sequential" (least memory, much slower)')
    if mode == "free_noise" and not memory.split_inference:
        steps.append("[memory] split_inference = true (memory flat with the shot's length)")
    if mode == "windows":
        steps.append('[long_shot] mode = "free_noise" with split_inference, or a smaller [model] window')
    if not memory.vae_slicing:
        steps.append("[memory] vae_slicing = true")
    if not memory.vae_tiling:
        steps.append("[memory] vae_tiling = true (large frames)")
    if memory.dtype in ("fp32", "auto"):
        steps.append('[memory] dtype = "fp16" or "bf16" (half the weights\' memory)')
    steps.append("a smaller [model] width/height or [model] decode_chunk_size, or closing other GPU programs")
    return "Set in the preset: " + "; ".join(steps) + ". Then run generate again: finished windows are kept."


def out_of_memory(exc: BaseException, memory: Memory, mode: str, where: str, retried: bool = False) -> BackendError:
    return BackendError(
        "out_of_memory",
        f"The GPU ran out of memory {where}{' (also after retrying with model CPU offload)' if retried else ''}: {exc}",
        advice(memory, mode, retried),
    )


def can_retry(memory: Memory) -> bool:
    return memory.retry_with_offload and memory.offload == "none"


def retrying(window_index: int) -> None:
    protocol.warning(
        "out_of_memory_retry",
        f"The GPU ran out of memory in window {window_index}; retrying it once with model CPU offload "
        '([memory] retry_with_offload). Set [memory] offload = "model" to start that way.',
    )
