"""Dead codes are replaced by in-batch residuals of their level, and counted per level."""
from __future__ import annotations

import torch

from semid.rqvae.callbacks import DeadCodeReset, reset_dead_codes
from semid.rqvae.module import RqvaeModule
from semid.rqvae.quantizer import Quantized


def test_reset_replaces_exactly_the_dead_codes() -> None:
    g = torch.Generator().manual_seed(0)
    books = torch.arange(2 * 4 * 2, dtype=torch.float32).view(2, 4, 2)
    before = books.clone()
    residuals = 100 + torch.randn(2, 6, 2, generator=g)  # [L, B, d], far from every code
    dead = torch.tensor([[False, True, False, True], [False, False, False, False]])
    n = reset_dead_codes(books, residuals, dead, g)
    assert n.tolist() == [2, 0]
    assert torch.equal(books[~dead], before[~dead])
    for k in (1, 3):  # each revived code is one of that level's residuals
        assert (residuals[0] == books[0, k]).all(dim=1).any()
    assert not torch.equal(books[0, 1], books[0, 3])  # distinct residuals while there are enough


def _module() -> RqvaeModule:
    model = {"levels": 2, "codebook_size": 4, "hidden_dim": 8, "latent_dim": 2, "input_dim": 3}
    train = {"batch_size": 8, "kmeans_init_items": 8}
    return RqvaeModule(model, train)


def test_callback_resets_codes_unused_in_the_batch_and_counts_them() -> None:
    m = _module()
    books = m.rqvae.quantizer.codebooks.data
    books.zero_()
    books[0] = torch.tensor([[0.0, 0.0], [1.0, 0.0], [9.0, 9.0], [8.0, 8.0]])
    residuals = torch.tensor([[[0.1, 0.0], [0.9, 0.1], [0.0, 0.1]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    codes = torch.tensor([[0, 0], [1, 0], [0, 0]])  # level 0 uses codes 0, 1; level 1 uses code 0
    m.last_quantized = Quantized(codes, residuals, torch.zeros_like(residuals), torch.zeros(3, 2))
    cb = DeadCodeReset(dead_after_steps=1, seed=0)
    n = cb.apply(m, step=1, optimizers=[])
    assert n.tolist() == [2, 3]
    assert m.dead_code_resets.tolist() == [2, 3]
    assert torch.equal(books[0, :2], torch.tensor([[0.0, 0.0], [1.0, 0.0]]))  # used codes untouched
    for k in (2, 3):
        assert (residuals[0] == books[0, k]).all(dim=1).any()  # a level-0 residual, not the far-away code


def test_dead_after_steps_waits_for_the_window() -> None:
    m = _module()
    residuals = torch.randn(2, 3, 2)
    m.last_quantized = Quantized(torch.zeros(3, 2, dtype=torch.long), residuals, residuals, torch.zeros(3, 2))
    cb = DeadCodeReset(dead_after_steps=3, seed=0)
    assert cb.apply(m, 1, []).tolist() == [0, 0]
    assert cb.apply(m, 2, []).tolist() == [0, 0]
    assert cb.apply(m, 3, []).tolist() == [3, 3]  # codes 1..3 unused for 3 steps


def test_reset_clears_adam_moments_of_revived_codes() -> None:
    m = _module()
    opt = torch.optim.Adam(m.parameters())
    p = m.rqvae.quantizer.codebooks
    p.grad = torch.ones_like(p)
    opt.step()
    residuals = torch.randn(2, 3, 2)
    m.last_quantized = Quantized(torch.zeros(3, 2, dtype=torch.long), residuals, residuals, torch.zeros(3, 2))
    DeadCodeReset(1, 0).apply(m, 1, [opt])
    assert torch.count_nonzero(opt.state[p]["exp_avg"][:, 1:]) == 0
    assert torch.count_nonzero(opt.state[p]["exp_avg"][:, 0]) > 0
