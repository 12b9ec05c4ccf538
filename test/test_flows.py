# Copyright 2026 The ood_seg_node developers. Licensed under the Apache License, Version 2.0.
"""Tests for the multi-scale patch flow: exact inverse, exact log-likelihood, sample shapes, training."""

from __future__ import annotations

import math

import pytest
import torch

from ood_seg_node.training.flows import (
    AffineCoupling,
    FlowError,
    PatchFlow,
    squeeze,
    standard_normal_log_prob,
    unsqueeze,
)


def _perturbed(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Fresh couplings are the identity (zero-initialised outputs); perturb them for meaningful tests."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
    return module


def test_squeeze_is_inverted_by_unsqueeze():
    x = torch.randn(2, 3, 8, 12)
    assert squeeze(x).shape == (2, 12, 4, 6)
    assert torch.equal(unsqueeze(squeeze(x)), x)


@pytest.mark.parametrize("size", [(8, 8), (16, 24)])
def test_flow_is_invertible_to_numerical_precision(size):
    torch.manual_seed(0)
    flow = _perturbed(PatchFlow(hidden=16).double())
    x = 0.02 + 0.96 * torch.rand(3, 3, *size, dtype=torch.float64)
    latents, _ = flow(x)
    assert [tuple(z.shape[1:]) for z in latents] == flow.latent_shapes(*size)
    assert torch.allclose(flow.inverse(latents), x, atol=1e-10, rtol=0)
    z = [torch.randn(2, *shape, dtype=torch.float64) for shape in flow.latent_shapes(*size)]
    again, _ = flow(flow.inverse(z))
    assert all(torch.allclose(a, b, atol=1e-8, rtol=0) for a, b in zip(again, z, strict=True))


def test_log_det_equals_the_full_jacobian_determinant():
    torch.manual_seed(1)
    flow = _perturbed(PatchFlow(hidden=8, couplings=2, final_couplings=2).double(), seed=1)
    x = 0.1 + 0.8 * torch.rand(1, 3, 4, 4, dtype=torch.float64)

    def to_latent(flat: torch.Tensor) -> torch.Tensor:
        latents, _ = flow(flat.view(1, 3, 4, 4))
        return torch.cat([z.flatten() for z in latents])

    jacobian = torch.autograd.functional.jacobian(to_latent, x.flatten())
    _, logdet = flow(x)
    assert jacobian.shape == (48, 48)
    assert torch.allclose(logdet[0], torch.linalg.slogdet(jacobian)[1], atol=1e-8)


@pytest.mark.parametrize("mask", ["channel", "checkerboard"])
def test_single_affine_layer_density_matches_the_analytic_gaussian(mask):
    """Constant s, t: N(0, 1) latents map to x_b ~ N(-t exp(-s), exp(-2 s)) and x_a ~ N(0, 1)."""
    channels = 2
    layer = AffineCoupling(channels, hidden=4, mask=mask, parity=0).double()
    s_raw, t_value = 0.7, -0.4
    transformed = channels if mask == "checkerboard" else channels // 2
    with torch.no_grad():
        layer.net[-1].bias.copy_(torch.tensor([s_raw] * transformed + [t_value] * transformed))
    s = math.tanh(s_raw)
    x = torch.randn(5, channels, 2, 2, dtype=torch.float64)
    y, logdet = layer(x)
    flow_log_prob = standard_normal_log_prob(y) + logdet

    fixed = torch.distributions.Normal(0.0, 1.0)
    free = torch.distributions.Normal(-t_value * math.exp(-s), math.exp(-s))
    if mask == "channel":
        analytic = fixed.log_prob(x[:, :1]).flatten(1).sum(1) + free.log_prob(x[:, 1:]).flatten(1).sum(1)
    else:
        keep = ((torch.arange(2).view(-1, 1) + torch.arange(2).view(1, -1)) % 2 == 0).expand_as(x[0])
        per_pixel = torch.where(keep, fixed.log_prob(x), free.log_prob(x))
        analytic = per_pixel.flatten(1).sum(1)
    assert torch.allclose(flow_log_prob, analytic, atol=1e-10)
    assert torch.allclose(layer.inverse(y), x, atol=1e-12)


@pytest.mark.parametrize("height,width", [(16, 16), (24, 40), (64, 64)])
def test_samples_have_the_requested_size_and_are_images(height, width):
    torch.manual_seed(2)
    flow = _perturbed(PatchFlow(hidden=8), seed=2)
    patches = flow.sample(3, height, width)
    assert patches.shape == (3, 3, height, width)
    assert torch.isfinite(patches).all()
    assert patches.min() >= 0 and patches.max() <= 1
    assert patches.std() > 0.01  # a perturbed flow gives textured patches, not a constant
    assert flow.sample(1, height).shape == (1, 3, height, height)


def test_samples_are_differentiable_in_the_flow_parameters():
    torch.manual_seed(3)
    flow = _perturbed(PatchFlow(hidden=8), seed=3)
    flow.sample(2, 16).mean().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in flow.parameters())


def test_bad_sizes_are_refused():
    flow = PatchFlow(hidden=8)
    with pytest.raises(FlowError, match="multiple of 4"):
        flow.sample(1, 18)
    with pytest.raises(FlowError, match="multiple of 4"):
        flow(torch.rand(1, 3, 10, 8))
    with pytest.raises(FlowError, match=r"\(B, 3, H, W\)"):
        flow(torch.rand(3, 8, 8))
    with pytest.raises(FlowError, match="channel"):
        AffineCoupling(3, 8, mask="channel", parity=0)


def test_maximum_likelihood_training_lowers_bits_per_dim():
    torch.manual_seed(4)
    flow = PatchFlow(hidden=16, couplings=2, final_couplings=2)
    # toy "inlier" patches: smooth colour ramps with a little noise
    ramp = torch.linspace(0.2, 0.8, 16).view(1, 1, 1, 16)
    colours = torch.rand(64, 3, 1, 1) * 0.5 + 0.25
    data = (colours * ramp.expand(64, 3, 16, 16) + 0.02 * torch.randn(64, 3, 16, 16)).clamp(0, 1)
    optimizer = torch.optim.Adam(flow.parameters(), lr=3e-3)
    with torch.no_grad():
        before = float(flow.bits_per_dim(data, dequantize=False))
    for _ in range(30):
        loss = flow.bits_per_dim(data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(flow.bits_per_dim(data, dequantize=False))
    assert after < before - 0.5
