# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""A small multi-scale normalizing flow over RGB image patches (RealNVP-style), for NFlowJS negatives.

NFlowJS (Grcić et al., arXiv 2112.12833) generates synthetic negative patches with a normalizing flow that
is trained by maximum likelihood on inlier patches and fine-tuned jointly with the segmenter. Two properties
of flows make them fit for this, and both are kept here:

- exact log-likelihood (change of variables), so the flow can be trained to *cover* the inlier patches;
- a fully convolutional architecture, so one flow samples patches of any size divisible by
  ``2 ** levels`` (16, 24, ..., 64 px by default) by drawing latents of the matching shape.

Architecture (Dinh et al., "Density estimation using Real NVP", ICLR 2017): a logit pre-transform, then per
level ``k`` checkerboard affine couplings, a 2x2 squeeze, ``k`` channel affine couplings, and a split that
factors half of the channels out as latents; a final stack of checkerboard couplings at the coarsest scale.
Every transform returns its log-|det Jacobian|, so :meth:`PatchFlow.log_prob` is exact; samples are
differentiable functions of the flow parameters (the joint training back-propagates through them).
The group's own flow is DenseFlow (Grcić et al., NeurIPS 2021), far larger than a CPU budget allows.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_LOG_2PI = math.log(2 * math.pi)


class FlowError(ValueError):
    """A flow is asked for an impossible shape (patch size not divisible by the squeeze factor, ...)."""


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """Sum over all but the batch dimension of log N(z; 0, I)."""
    return (-0.5 * (z * z + _LOG_2PI)).flatten(1).sum(1)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 block becomes 4 channels (volume-preserving)."""
    b, c, h, w = x.shape
    x = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(b, c * 4, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze`."""
    b, c, h, w = x.shape
    x = x.view(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(b, c // 4, h * 2, w * 2)


def checkerboard(height: int, width: int, parity: int, like: torch.Tensor) -> torch.Tensor:
    """(1, 1, H, W) mask that is 1 on pixels with (i + j) % 2 == parity (the pixels left unchanged)."""
    rows = torch.arange(height, device=like.device).view(-1, 1)
    cols = torch.arange(width, device=like.device).view(1, -1)
    return ((rows + cols) % 2 == parity).to(like.dtype).view(1, 1, height, width)


class AffineCoupling(nn.Module):
    """Affine coupling y_b = x_b * exp(s(x_a)) + t(x_a), y_a = x_a; log|det J| = sum s.

    Args:
        channels: channels of the tensor it transforms.
        hidden: width of the conditioning network.
        mask: ``checkerboard`` (x_a = pixels of one parity, all channels) or ``channel`` (x_a = one half
            of the channels, all pixels).
        parity: which parity / half is kept fixed; alternate it between consecutive layers.

    The conditioning network's last convolution starts at zero, so a fresh coupling is the identity, and
    ``s = scale * tanh(raw)`` bounds the log-scale, which keeps early training and sampling stable.
    """

    def __init__(self, channels: int, hidden: int, *, mask: str, parity: int) -> None:
        super().__init__()
        if mask not in ("checkerboard", "channel"):
            raise FlowError(f"unknown coupling mask {mask!r}; valid: checkerboard, channel")
        if mask == "channel" and channels % 2:
            raise FlowError(f"a channel coupling needs an even channel count, got {channels}")
        self.mask = mask
        self.parity = int(parity) % 2
        self.channels = channels
        conditioning = channels + 1 if mask == "checkerboard" else channels // 2
        transformed = channels if mask == "checkerboard" else channels // 2
        self.net = nn.Sequential(
            nn.Conv2d(conditioning, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, 2 * transformed, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(1, transformed, 1, 1))

    def _st(self, conditioning: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(conditioning).chunk(2, dim=1)
        return self.scale * torch.tanh(raw_s), t

    def _halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x.chunk(2, dim=1)
        return (a, b) if self.parity == 0 else (b, a)

    def _join(self, fixed: torch.Tensor, changed: torch.Tensor) -> torch.Tensor:
        return torch.cat((fixed, changed) if self.parity == 0 else (changed, fixed), dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data direction -> latent direction: (y, log|det dy/dx|) with the log-det per sample."""
        if self.mask == "channel":
            fixed, free = self._halves(x)
            s, t = self._st(fixed)
            return self._join(fixed, free * torch.exp(s) + t), s.flatten(1).sum(1)
        keep = checkerboard(x.shape[-2], x.shape[-1], self.parity, x)
        s, t = self._st(torch.cat([x * keep, keep.expand(x.shape[0], 1, -1, -1)], dim=1))
        s, t = s * (1 - keep), t * (1 - keep)
        return x * torch.exp(s) + t, s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Latent direction -> data direction (exact inverse of :meth:`forward`)."""
        if self.mask == "channel":
            fixed, free = self._halves(y)
            s, t = self._st(fixed)
            return self._join(fixed, (free - t) * torch.exp(-s))
        keep = checkerboard(y.shape[-2], y.shape[-1], self.parity, y)
        s, t = self._st(torch.cat([y * keep, keep.expand(y.shape[0], 1, -1, -1)], dim=1))
        s, t = s * (1 - keep), t * (1 - keep)
        return (y - t) * torch.exp(-s)


class _Level(nn.Module):
    """Checkerboard couplings, squeeze, channel couplings, then half the channels leave as a latent."""

    def __init__(self, channels: int, hidden: int, couplings: int) -> None:
        super().__init__()
        self.before = nn.ModuleList(
            AffineCoupling(channels, hidden, mask="checkerboard", parity=i) for i in range(couplings)
        )
        self.after = nn.ModuleList(
            AffineCoupling(4 * channels, hidden, mask="channel", parity=i) for i in range(couplings)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for layer in self.before:
            x, ld = layer(x)
            logdet = logdet + ld
        x = squeeze(x)
        for layer in self.after:
            x, ld = layer(x)
            logdet = logdet + ld
        kept, out = x.chunk(2, dim=1)
        return kept, out, logdet

    def inverse(self, kept: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        x = torch.cat([kept, out], dim=1)
        for layer in reversed(self.after):
            x = layer.inverse(x)
        x = unsqueeze(x)
        for layer in reversed(self.before):
            x = layer.inverse(x)
        return x


class PatchFlow(nn.Module):
    """Multi-scale RealNVP over RGB patches in [0, 1]; any size divisible by ``2 ** levels``.

    Args:
        hidden: width of every coupling's conditioning network.
        levels: squeeze/split levels (patch sides must be divisible by ``2 ** levels``).
        couplings: checkerboard (and channel) couplings per level.
        final_couplings: checkerboard couplings at the coarsest scale.
        alpha: the logit pre-transform maps x to logit(alpha + (1 - 2 alpha) x), which keeps dequantised
            pixels at 0 and 1 at finite logits (RealNVP's choice for images).

    Densities are over continuous x in [0, 1]^D (dequantised pixels), in nats.
    """

    def __init__(self, *, hidden: int = 48, levels: int = 2, couplings: int = 3, final_couplings: int = 4,
                 alpha: float = 0.05) -> None:
        super().__init__()
        if levels < 1 or couplings < 1 or final_couplings < 1 or hidden < 1:
            raise FlowError("a PatchFlow needs levels, couplings, final_couplings and hidden >= 1")
        if not 0.0 < alpha < 0.5:
            raise FlowError(f"alpha must lie in (0, 0.5), got {alpha}")
        self.config = {"hidden": hidden, "levels": levels, "couplings": couplings,
                       "final_couplings": final_couplings, "alpha": alpha}
        self.alpha = float(alpha)
        self.levels = nn.ModuleList()
        channels = 3
        for _ in range(levels):
            self.levels.append(_Level(channels, hidden, couplings))
            channels *= 2  # x4 by the squeeze, /2 by the split
        self.final = nn.ModuleList(
            AffineCoupling(channels, hidden, mask="checkerboard", parity=i) for i in range(final_couplings)
        )
        self.final_channels = channels

    @property
    def multiple(self) -> int:
        """Patch sides must be multiples of this."""
        return 2 ** len(self.levels)

    def _check_size(self, height: int, width: int) -> None:
        if height <= 0 or width <= 0 or height % self.multiple or width % self.multiple:
            raise FlowError(
                f"patch size {height}x{width} is not a positive multiple of {self.multiple} "
                f"(the flow squeezes {len(self.levels)} times)"
            )

    def latent_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """(C, h, w) of every latent, finest first, for a patch of ``height`` x ``width``."""
        self._check_size(height, width)
        shapes, channels = [], 3
        for _ in self.levels:
            height, width = height // 2, width // 2
            shapes.append((2 * channels, height, width))
            channels *= 2
        shapes.append((channels, height, width))
        return shapes

    def _to_logit(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.alpha + (1 - 2 * self.alpha) * x
        y = torch.log(p) - torch.log1p(-p)
        logdet = (math.log(1 - 2 * self.alpha) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        return y, logdet

    def _from_logit(self, y: torch.Tensor) -> torch.Tensor:
        return (torch.sigmoid(y) - self.alpha) / (1 - 2 * self.alpha)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Image (B, 3, H, W) in [0, 1] -> (latents finest first, log|det dz/dx| per sample)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise FlowError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        self._check_size(x.shape[-2], x.shape[-1])
        h, logdet = self._to_logit(x)
        latents = []
        for level in self.levels:
            h, out, ld = level(h)
            latents.append(out)
            logdet = logdet + ld
        for layer in self.final:
            h, ld = layer(h)
            logdet = logdet + ld
        latents.append(h)
        return latents, logdet

    def inverse(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """Latents (finest first) -> image; exact inverse, may leave [0, 1] by alpha / (1 - 2 alpha)."""
        if len(latents) != len(self.levels) + 1:
            raise FlowError(f"expected {len(self.levels) + 1} latents, got {len(latents)}")
        h = latents[-1]
        for layer in reversed(self.final):
            h = layer.inverse(h)
        for level, out in zip(reversed(self.levels), reversed(latents[:-1]), strict=True):
            h = level.inverse(h, out)
        return self._from_logit(h)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density (nats) of continuous patches x in (0, 1)^D, per sample."""
        latents, logdet = self(x)
        return sum(standard_normal_log_prob(z) for z in latents) + logdet

    def bits_per_dim(self, images: torch.Tensor, *, dequantize: bool = True) -> torch.Tensor:
        """Mean negative log-likelihood in bits per sub-pixel of 8-bit images given as floats in [0, 1].

        Uniform dequantisation (x * 255 + u) / 256 turns the discrete images into a continuous density;
        the -D log 256 term converts the density on [0, 1] into one on [0, 256), the usual convention.
        """
        x = images * 255.0
        x = (x + (torch.rand_like(x) if dequantize else 0.5)) / 256.0
        dims = x[0].numel()
        nll = -self.log_prob(x) + dims * math.log(256.0)
        return (nll / (dims * math.log(2.0))).mean()

    def sample(self, count: int, height: int, width: int | None = None, *, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` patches (count, 3, height, width) in [0, 1], differentiable in the parameters.

        Clamping makes every sample a valid image; pixels it clips stop passing gradient, the rest pass it.
        """
        width = height if width is None else width
        reference = next(self.parameters())
        latents = [
            torch.randn((count, *shape), generator=generator, device=reference.device, dtype=reference.dtype)
            * temperature
            for shape in self.latent_shapes(height, width)
        ]
        return self.inverse(latents).clamp(0.0, 1.0)

