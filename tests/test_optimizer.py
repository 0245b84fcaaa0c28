"""The AdamW the trainer and fine-tuning share: fused kernel where the device has one, same
algorithm as torch's default kernel, and an old (default-kernel) checkpoint resumes with its own kernel."""

import torch
from torch import nn

from mminilm.training.schedule import adamw_kernel, adamw_without_decay_on_norms, kernel_of


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(50, 16), nn.LayerNorm(16), nn.Linear(16, 3))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, first: int = 0) -> None:
    for step in range(first, first + steps):
        ids = torch.randint(0, 50, (4, 7), generator=torch.Generator().manual_seed(step))
        model(ids).mean(dim=1).logsumexp(dim=-1).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _default_kernel(model: nn.Module) -> torch.optim.AdamW:
    """What adamw_without_decay_on_norms built before fused was the default."""
    return adamw_without_decay_on_norms(model, 1e-2, 0.01, fused=False)


def test_cpu_weights_get_the_fused_kernel_and_it_computes_what_the_default_does():
    assert adamw_kernel("cpu") == "fused"
    fused_model, default_model = _model(), _model()
    fused = adamw_without_decay_on_norms(fused_model, 1e-2, 0.01)
    assert kernel_of(fused) == "fused" and kernel_of(_default_kernel(_model())) == "default"
    _train(fused_model, fused, 5)
    _train(default_model, _default_kernel(default_model), 5)
    moved = [(a - b).abs().max().item() for a, b in zip(fused_model.parameters(), _model().parameters())]
    assert min(moved) > 1e-3  # five steps of lr 1e-2 moved every tensor
    for a, b in zip(fused_model.parameters(), default_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_default_kernel_checkpoint_resumes_bit_identically_with_its_kernel():
    uninterrupted = _model()
    optimizer = _default_kernel(uninterrupted)
    _train(uninterrupted, optimizer, 6)

    first_half = _model()
    optimizer = _default_kernel(first_half)
    _train(first_half, optimizer, 3)
    saved_weights, saved_state = first_half.state_dict(), optimizer.state_dict()

    resumed = _model(seed=1)
    resumed.load_state_dict(saved_weights)
    restored = adamw_without_decay_on_norms(resumed, 1e-2, 0.01)  # fused by default ...
    restored.load_state_dict(saved_state)
    assert kernel_of(restored) == "default"  # ... but the checkpoint brings its kernel back
    _train(resumed, restored, 3, first=3)
    for a, b in zip(resumed.parameters(), uninterrupted.parameters()):
        assert torch.equal(a, b)
