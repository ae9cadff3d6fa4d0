"""The noisy release of METHOD §3 step 5 and §6.

Only w + σ·ξ, ξ ~ N(0, I_p), with fresh noise for every release, is ever served; the noiseless
weights and the noise never leave the worker ([Z24] Alg. 1 line "release"; METHOD §3). The
generator is seeded from the operating system's CSPRNG (:func:`secrets.randbits`) at every call;
the seed is a local variable that is neither returned nor stored, so the noise cannot be
reproduced from any state this module keeps.

The generator lives on the weights' device (a CUDA generator on a GPU worker, so the noise is
drawn there and never crosses to the host), seeded the same way.

Note: torch's generators are not themselves cryptographic; what the OS seed buys is that the noise
of a release is unpredictable from anything the service stores or serves.
"""

from __future__ import annotations

import math
import secrets

import torch

__all__ = ["noisy_release"]


def noisy_release(params: torch.Tensor, noise_std: float) -> torch.Tensor:
    """Return params + σ·ξ with ξ ~ N(0, I) drawn from an OS-seeded generator.

    Args:
        params: ``Tensor [p]`` (any shape works) the noiseless internal weights.
        noise_std: σ ≥ 0, in the units of the weights; σ = 0 returns a copy.

    Returns:
        A new tensor of the same shape, dtype and device; ``params`` is not modified.

    Raises:
        ValueError: If ``noise_std`` is negative or not finite, ``params`` is not floating, or
            σ is so large that a released weight overflows ``params``' dtype.
    """
    if isinstance(noise_std, bool) or not math.isfinite(noise_std) or noise_std < 0:
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std!r}")
    if not params.is_floating_point():
        raise ValueError(f"params must be a floating-point tensor, got {params.dtype}")
    params = params.detach()
    if noise_std == 0:
        return params.clone()
    generator = torch.Generator(device=params.device)
    generator.manual_seed(secrets.randbits(63))
    noise = torch.randn(params.shape, generator=generator, dtype=params.dtype, device=params.device)
    released = params + noise_std * noise
    if not bool(torch.isfinite(released).all()):  # a file of infinities is no model
        raise ValueError(f"noise_std {noise_std:g} overflows {params.dtype} weights")
    return released
