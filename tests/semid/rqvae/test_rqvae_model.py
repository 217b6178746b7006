"""The RQ-VAE loss against a hand computation, and the stop-gradients where the paper puts them."""
from __future__ import annotations

import pytest
import torch

from semid.rqvae.config import ModelConfig
from semid.rqvae.model import Rqvae, rqvae_loss
from semid.rqvae.quantizer import ResidualQuantizer, kmeans, nearest_code


def test_loss_matches_hand_computation() -> None:
    x = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    x_hat = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # ||x - x̂||²: 1 and 1 -> mean 1
    r = torch.tensor([[[1.0], [2.0]], [[0.5], [-1.0]]])  # [L=2, B=2, d=1]
    e = torch.tensor([[[0.0], [1.0]], [[0.5], [0.0]]])
    # level 0: ((1-0)² + (2-1)²)/2 = 1;  level 1: (0² + (-1)²)/2 = 0.5
    out = rqvae_loss(x, x_hat, r, e, beta=0.25)
    assert out.recon.item() == pytest.approx(1.0)
    assert out.commitment.tolist() == pytest.approx([1.0, 0.5])
    assert out.codebook.tolist() == pytest.approx([1.0, 0.5])
    assert out.total.item() == pytest.approx(1.0 + 0.25 * 1.5 + 1.5)


def _quantizer() -> ResidualQuantizer:
    q = ResidualQuantizer(levels=2, codebook_size=3, dim=2)
    with torch.no_grad():
        q.codebooks.copy_(torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]],
                                        [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1]]]))
    return q


def test_residual_quantization_by_hand() -> None:
    q = _quantizer()
    z = torch.tensor([[1.08, 0.01], [0.01, 0.93]])
    out = q(z)
    # level 0: nearest [1, 0] and [0, 1]; residuals r_1 = [0.08, 0.01] -> [0.1, 0], [0.01, -0.07] -> [0, 0]
    assert out.codes.tolist() == [[1, 1], [2, 0]]
    assert torch.allclose(out.residuals[1], z - torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.allclose(out.z_q, torch.tensor([[1.1, 0.0], [0.0, 1.0]]))  # forward value is ẑ
    assert q.encode(z).tolist() == out.codes.tolist()


def test_codebook_term_moves_codebooks_only() -> None:
    q = _quantizer()
    z = torch.tensor([[1.2, 0.1], [0.3, 0.8]], requires_grad=True)
    out = q(z)
    codebook_term = ((out.residuals.detach() - out.codewords) ** 2).sum(-1).mean(-1).sum()
    codebook_term.backward()
    assert z.grad is None or torch.count_nonzero(z.grad) == 0
    g = q.codebooks.grad
    assert g is not None and torch.count_nonzero(g) > 0
    chosen = torch.zeros_like(g, dtype=torch.bool)
    for level in range(2):
        chosen[level, out.codes[:, level]] = True
    assert torch.count_nonzero(g[~chosen]) == 0  # only the chosen codes move


def test_commitment_term_moves_encoder_only() -> None:
    q = _quantizer()
    z = torch.tensor([[1.2, 0.1], [0.3, 0.8]], requires_grad=True)
    out = q(z)
    beta = 0.25
    commitment = beta * ((out.residuals - out.codewords.detach()) ** 2).sum(-1).mean(-1).sum()
    commitment.backward()
    assert q.codebooks.grad is None or torch.count_nonzero(q.codebooks.grad) == 0
    # r_l = z - Σ_{j<l} sg[e_j], so ∂/∂z Σ_l β mean ||r_l - e_l||² = Σ_l 2β (r_l - e_l) / B
    expected = sum(2 * beta * (out.residuals[lv] - out.codewords[lv]).detach() / 2 for lv in range(2))
    assert torch.allclose(z.grad, expected)


def test_reconstruction_gradient_passes_straight_through() -> None:
    q = _quantizer()
    z = torch.tensor([[1.2, 0.1], [0.3, 0.8]], requires_grad=True)
    out = q(z)
    (out.z_q ** 2).sum().backward()
    z_hat = out.codewords.sum(0).detach()
    assert torch.allclose(z.grad, 2 * z_hat)  # the gradient at ẑ is handed to z unchanged
    assert q.codebooks.grad is None or torch.count_nonzero(q.codebooks.grad) == 0


def test_full_model_gradients_stop_at_sg() -> None:
    torch.manual_seed(0)
    model = Rqvae(ModelConfig(levels=2, codebook_size=4, hidden_dim=8, latent_dim=3, input_dim=5))
    x = torch.randn(16, 5)
    model.quantizer.init_kmeans(model.encoder(x), iters=3)
    z = model.encoder(x)
    z.retain_grad()
    q = model.quantizer(z)
    loss = rqvae_loss(x, model.decoder(q.z_q), q.residuals, q.codewords, beta=0.25)
    loss.codebook.sum().backward(retain_graph=True)
    assert z.grad is None or torch.count_nonzero(z.grad) == 0
    assert all(p.grad is None for p in model.encoder.parameters())
    assert torch.count_nonzero(model.quantizer.codebooks.grad) > 0
    model.zero_grad()
    z.grad = None
    (loss.recon + 0.25 * loss.commitment.sum()).backward()
    assert torch.count_nonzero(z.grad) > 0
    assert model.quantizer.codebooks.grad is None or torch.count_nonzero(model.quantizer.codebooks.grad) == 0


def test_nearest_code_breaks_ties_to_lowest_index() -> None:
    book = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]])
    assert nearest_code(torch.tensor([[0.0, 0.0], [2.0, 0.0]]), book).tolist() == [0, 0]


def test_kmeans_finds_separated_clusters() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = (centres[:, None, :] + 0.1 * torch.randn(3, 50, 2, generator=g)).reshape(-1, 2)
    found = kmeans(x, 3, iters=20, generator=g)
    d = torch.cdist(centres, found).min(dim=1).values
    assert (d < 0.2).all()
