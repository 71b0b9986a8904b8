"""Golden values: every balancer's pure function on one shared 2×3 gradient matrix.

``J`` is the matrix of torchjd's value tests; MGDA, PCGrad, IMTL-G, Aligned-MTL (×2: mtlkit sums
the aligned rows, torchjd averages them), CAGrad (c=0.5, no rescale) and Nash-MTL's direction
match torchjd's pinned outputs (an independent implementation). atol 1e-4, rtol 0.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from mtlkit.balancing.aligned_mtl import aligned_mtl_weights
from mtlkit.balancing.cagrad import cagrad_weights
from mtlkit.balancing.db_mtl import db_mtl_update
from mtlkit.balancing.dwa import dwa_weights
from mtlkit.balancing.famo import famo_weights
from mtlkit.balancing.gls import gls_weights
from mtlkit.balancing.gradnorm import gradnorm_targets
from mtlkit.balancing.gradvac import gradvac_weights
from mtlkit.balancing.imtl_g import imtl_g_weights
from mtlkit.balancing.mgda import mgda_weights
from mtlkit.balancing.nash_mtl import nash_weights
from mtlkit.balancing.pcgrad import pcgrad_weights
from mtlkit.balancing.scale_invariant import scale_invariant_weights

J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
G = J @ J.T
L = torch.tensor([0.5, 2.0])
ATOL = dict(atol=1e-4, rtol=0)

GRADIENT_TABLE = [  # (name, weights, expected weights, expected combined J-row combination)
    ("mgda", lambda: mgda_weights(G), [0.6, 0.4], [0.0, 1.0, 1.0]),
    # Sener's convention: α from normalised rows, applied to the raw ones. l2: unit rows → ½, ½
    ("mgda l2", lambda: mgda_weights(G, L, "l2"), [0.5, 0.5], [1.0, 1.0, 1.0]),
    # loss: rows 2·g1, 0.5·g2 → γ = (9.5 + 22) / (72 + 9.5 + 44)
    ("mgda loss", lambda: mgda_weights(G, L, "loss"), [31.5 / 125.5, 94 / 125.5],
     [(-4 * 31.5 + 6 * 94) / 125.5, 1.0, 1.0]),
    ("pcgrad", lambda: pcgrad_weights(G), [2.2222, 1.5789], [0.5848, 3.8012, 3.8012]),
    ("imtl_g", lambda: imtl_g_weights(G), [0.5923, 0.4077], [0.0767, 1.0, 1.0]),
    ("aligned_mtl", lambda: aligned_mtl_weights(G), [1.1182, 0.8166], [0.4266, 1.9347, 1.9347]),
    ("cagrad c=.5", lambda: cagrad_weights(G, 0.5, 0), [0.7041, 0.5], [0.1835, 1.2041, 1.2041]),
    ("cagrad c=.4 r1", lambda: cagrad_weights(G, 0.4, 1), [0.5718, 0.4310],
     [0.2990, 1.0028, 1.0028]),
    ("gradvac φ̂=0", lambda: gradvac_weights(G, torch.zeros(2, 2))[0], [2.2222, 1.5789],
     [0.5848, 3.8012, 3.8012]),
    ("nash_mtl", lambda: nash_weights(G), [0.5915, 0.4071], [0.0766, 0.9985, 0.9985]),
]


@pytest.mark.parametrize(("name", "fn", "weights", "combined"), GRADIENT_TABLE,
                         ids=[r[0] for r in GRADIENT_TABLE])
def test_gradient_weightings(name, fn, weights, combined):
    w = fn()
    assert_close(w, torch.tensor(weights), **ATOL)
    assert_close(w @ J, torch.tensor(combined), **ATOL)


def test_nash_direction_matches_torchjd():
    d = nash_weights(G) @ J
    assert_close(d / d.norm(), torch.tensor([0.0542, 0.7061, 0.7061]), **ATOL)


def _pcgrad_on_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """The published vector-space algorithm (fixed order), independent of the Gram version."""
    out = []
    for i, gi in enumerate(rows):
        g = gi.clone().double()
        for j, gj in enumerate(rows):
            gj = gj.double()
            if j != i and g @ gj < 0:
                g = g - (g @ gj) / (gj @ gj) * gj
        out.append(g)
    return torch.stack(out).sum(0)


def _gradvac_on_rows(rows, phi, beta):
    out, phi = [], phi.clone().double()
    for i, gi in enumerate(rows):
        g = gi.clone().double()
        for j, gj in enumerate(rows):
            if j == i:
                continue
            gj = gj.double()
            rho = (g @ gj) / (g.norm() * gj.norm() + 1e-8)
            t = phi[i, j]
            if rho < t:
                g = g + gj * g.norm() * (t * (1 - rho**2).sqrt() - rho * (1 - t**2).sqrt()) / (
                    gj.norm() * (1 - t**2).sqrt() + 1e-8)
            phi[i, j] = (1 - beta) * t + beta * rho
        out.append(g)
    return torch.stack(out).sum(0), phi


def test_pcgrad_and_gradvac_match_vector_algorithms_on_three_tasks():
    rows = [torch.tensor([1.0, 0.0, 2.0, -1.0]), torch.tensor([-2.0, 1.0, 0.0, 1.0]),
            torch.tensor([0.5, -3.0, -1.0, 0.0])]
    j3 = torch.stack(rows)
    g3 = j3 @ j3.T
    assert_close((pcgrad_weights(g3).double() @ j3.double()), _pcgrad_on_rows(rows), **ATOL)
    phi = torch.tensor([[0, 0.3, -0.2], [0.5, 0, 0.1], [0.2, 0.4, 0.0]])
    w, new_phi = gradvac_weights(g3, phi, beta=0.5)
    ref, ref_phi = _gradvac_on_rows(rows, phi, 0.5)
    assert_close(w.double() @ j3.double(), ref, **ATOL)
    assert_close(new_phi, ref_phi, **ATOL)


def test_loss_weightings():
    # GLS: (Π L)^{1/2} / (2 L_k) = 1/(2·0.5), 1/(2·2)
    assert_close(gls_weights(L), torch.tensor([1.0, 0.25]), **ATOL)
    assert_close(scale_invariant_weights(L), torch.tensor([2.0, 0.5]), **ATOL)
    # FAMO at ξ = 0: z = ½, c = ½/0.5 + ½/2 = 1.25 → w = ½/(1.25·0.5), ½/(1.25·2)
    assert_close(famo_weights(torch.zeros(2), L, torch.zeros(2)), torch.tensor([0.8, 0.2]),
                 **ATOL)
    # DWA: r = (0.5, 0.9), w = 2·softmax(r/2)
    e = [math.exp(0.25), math.exp(0.45)]
    assert_close(dwa_weights(torch.tensor([0.5, 1.8]), torch.tensor([1.0, 2.0])),
                 torch.tensor([2 * e[0] / sum(e), 2 * e[1] / sum(e)]), **ATOL)
    # GradNorm: r = (0.5/0.25, 1)/mean → (4/3, 2/3); targets = mean(norms)·r^1.5
    t = gradnorm_targets(torch.tensor([1.0, 3.0]), torch.tensor([0.5, 1.0]),
                         torch.tensor([1.0, 4.0]), 1.5)
    assert_close(t, 2.0 * torch.tensor([(4 / 3) ** 1.5, (2 / 3) ** 1.5]), **ATOL)


def test_db_mtl_first_step():
    # buffer 0, step 1: ĝ = g/L + 0.9(0 − g/L) = 0.1·g/L; scales = max‖ĝ‖/‖ĝ_k‖
    buf, combined, scales = db_mtl_update(torch.zeros(2, 3), J, L, torch.tensor([1, 1]))
    assert_close(buf, 0.1 * J / L[:, None], **ATOL)
    n = [0.1 * math.sqrt(18) / 0.5, 0.1 * math.sqrt(38) / 2.0]
    assert_close(scales, torch.tensor([1.0, n[0] / n[1]]), **ATOL)
    assert_close(combined, buf[0] + n[0] / n[1] * buf[1], **ATOL)
