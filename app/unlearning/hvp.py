"""Curvature of the objective on the retain set: gradient and Hessian-vector products.

The Newton step of METHOD §3 needs g = ∇L(w; D_r) and products with H = ∇²L(w; D_r), both on the
*mean* scale of :class:`~app.unlearning.objective.Objective` (mean cross-entropy plus the (wd/2)‖w‖²
term), so that the two match ([Z24] Alg. 1). H is never formed (Pearlmutter's trick). Two exact
product modes, equal up to rounding (METHOD §3 allows either):

- ``"double_backward"`` (default): reverse-over-reverse; the first backward keeps its graph
  (``create_graph=True``), the second does not, and both graphs are freed when the call returns.
  Gradients are taken with respect to per-parameter leaf tensors, not slices of the flat vector
  (slicing costs one zero-filled [p] buffer per parameter per backward). Measured on the paper's
  784-32-32-10 MLP, 2 CPU threads: a full-set product over 59k samples 0.14 s (forward mode
  0.23 s); one batched 10-chain × 10-sample LiSSA step 1.6 ms (forward mode 4.1 ms).
- ``"forward_over_reverse"``: ``torch.func.jvp`` of ``torch.func.grad``; no graph at all.

The convolutional networks (:mod:`app.unlearning.convnets`, BatchNorm in eval mode) go through the
same generic path; double backward stays the default there too. Measured on CPU, 1 thread, one
LiSSA step of 10 chains x 10 samples (and one full-set product over 64 samples): tiny AllCNN
(width 8, 8x8 digits, p = 9,922) 21 ms vs 29 ms forward-over-reverse (31 ms vs 18 ms); tiny
ResNet-18 (width 4, p = 44,550) 49 ms vs 98 ms (36 ms vs 43 ms); the paper's AllCNN on 3x32x32
(p = 1.37M) 4.9 s vs 6.5 s (2.1 s vs 2.0 s); the paper's ResNet-18 (p = 11.2M) 21.7 s vs 135 s
(8.1 s vs 16.5 s).

For a plain ReLU MLP (``Sequential(Linear, ReLU, ..., Linear)``, the paper's network) the
``"double_backward"`` mode takes its products in closed form instead (:mod:`app.unlearning.mlp_hvp`,
Pearlmutter's R-operator written out with batched matrix products, no autograd graph): the same
numbers up to summation order, measured 3× faster per LiSSA step on MNIST (0.73 ms vs 2.2 ms for
10 chains × 10 samples, 1 thread). ``closed_form=False`` forces autograd.

The retain set is walked in chunks of ``chunk_size`` samples, so memory stays flat in |D_r|:
per-chunk sums of the cross-entropy derivatives are accumulated, then divided by n once.

The LiSSA estimator ([Z24] §3.3) instead needs products with minibatch Hessians H_B; those for r
independent chains are taken in one batched call per recursion step: the forward pass is
``torch.func.vmap``-ped over the chains' (parameter copy, minibatch) pairs, so the Hessian of the
summed chain losses is block-diagonal and one product yields every chain's H_{B_j}·v_j.

Sources: [Z24] Zhang et al., ICML 2024, §3.3 and Alg. 1; Pearlmutter, "Fast exact multiplication
by the Hessian", Neural Computation 1994.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import torch
from torch.func import grad, jvp, vmap

from app.unlearning.mlp_hvp import is_plain_mlp, mlp_grad_sum, mlp_hvp_sum
from app.unlearning.objective import Objective
from app.unlearning.params import param_shapes

__all__ = ["ProductMode", "RetainSetCurvature"]

ProductMode = Literal["double_backward", "forward_over_reverse"]
_MODES: tuple[str, ...] = ("double_backward", "forward_over_reverse")


class RetainSetCurvature:
    """Gradient and Hessian-vector products of L(·; D_r) over a whole retain set, in chunks.

    All products are on the scale of METHOD §1: the mean cross-entropy over the set plus the
    weight-decay term, i.e. ``H = (1/n)·Σ_i ∇²CE_i + wd·I`` and ``g = (1/n)·Σ_i ∇CE_i + wd·w``.

    Counters (for diagnostics and certificates): ``gradient_count`` full-set gradients,
    ``hvp_count`` full-set Hessian-vector products (one per vector, however many chunks), and
    ``minibatch_hvp_count`` minibatch products (one per chain and step).

    Args:
        objective: The objective L; its module is evaluated in eval mode.
        x: ``Tensor [n, ...]`` the retain-set inputs (on the device and dtype of the parameters).
        y: ``LongTensor [n]`` the retain-set labels.
        chunk_size: Samples per forward pass (memory knob only: results do not depend on it beyond
            floating-point summation order).
        mode: How products are taken, ``"double_backward"`` (default, faster on CPU) or
            ``"forward_over_reverse"`` (``torch.func.jvp`` of ``torch.func.grad``).
        closed_form: In ``"double_backward"`` mode, use the closed-form R-operator products of
            :mod:`app.unlearning.mlp_hvp` when the model is a plain ReLU MLP (default True; the
            results equal double backward up to summation order).

    Raises:
        ValueError: If the set is empty, ``x`` and ``y`` disagree in length, ``chunk_size < 1``
            or ``mode`` is unknown.
    """

    def __init__(
        self,
        objective: Objective,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        chunk_size: int = 8192,
        mode: ProductMode = "double_backward",
        closed_form: bool = True,
    ) -> None:
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        if x.shape[0] == 0:
            raise ValueError("the retain set is empty")
        if y.dim() != 1:
            raise ValueError(f"y must be one-dimensional, got shape {tuple(y.shape)}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.objective = objective
        self.x = x
        self.y = y
        self.chunk_size = int(chunk_size)
        self.mode: ProductMode = mode
        # Plain ReLU MLPs get the closed-form R-operator products of :mod:`mlp_hvp` (same
        # numbers, no autograd graph); everything else, and forward-over-reverse, uses autograd.
        self.closed_form = bool(
            closed_form and mode == "double_backward" and is_plain_mlp(objective.model)
        )
        self.gradient_count = 0
        self.hvp_count = 0
        self.minibatch_hvp_count = 0
        self._grad_sum = grad(objective.data_loss_sum)
        self._grad_mean = grad(objective.data_loss_mean)
        shapes = param_shapes(objective.model)
        self._names = [name for name, _ in shapes]
        self._shapes = [tuple(shape) for _, shape in shapes]
        self._sizes = [math.prod(shape) for shape in self._shapes]

    @property
    def n(self) -> int:
        """|D_r|, the number of retain samples."""
        return int(self.x.shape[0])

    @property
    def num_params(self) -> int:
        """p, the length of the flat parameter vector."""
        return self.objective.num_params

    @property
    def weight_decay(self) -> float:
        """wd, the coefficient of the (wd/2)‖w‖² term."""
        return self.objective.weight_decay

    def _chunks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self.n, self.chunk_size):
            stop = start + self.chunk_size
            yield self.x[start:stop], self.y[start:stop]

    def _check_w(self, w: torch.Tensor) -> torch.Tensor:
        if w.dim() != 1 or w.shape[0] != self.num_params:
            raise ValueError(f"w has shape {tuple(w.shape)}, expected ({self.num_params},)")
        return w.detach()

    def _check_vs(self, w: torch.Tensor, vs: torch.Tensor, name: str) -> torch.Tensor:
        if vs.dim() != 2 or vs.shape[1] != w.shape[0]:
            raise ValueError(f"{name} has shape {tuple(vs.shape)}, expected (k, {w.shape[0]})")
        return vs.detach()

    def _split(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``flat`` [..., p] shaped [..., *param_shape], in parameter order."""
        lead = tuple(flat.shape[:-1])
        parts = torch.split(flat, self._sizes, dim=-1)
        return [
            part.reshape(*lead, *shape) for part, shape in zip(parts, self._shapes, strict=True)
        ]

    def _leaves(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Fresh leaf tensors (requires_grad) holding the split of ``flat``."""
        return [part.detach().clone().requires_grad_(True) for part in self._split(flat)]

    def _double_backward(
        self, loss: torch.Tensor, leaves: list[torch.Tensor], tangents: list[list[torch.Tensor]]
    ) -> list[torch.Tensor]:
        """∇²loss·t for each tangent list t (per-parameter pieces); results flattened to [..., p].

        The first backward keeps its graph (``create_graph=True``); the second does not, and the
        graph is released after the last tangent.
        """
        grads = torch.autograd.grad(loss, leaves, create_graph=True, materialize_grads=True)
        # A gradient piece that does not depend on the parameters has a zero Hessian block row.
        live = [i for i, g_i in enumerate(grads) if g_i.requires_grad]
        lead = leaves[0].dim() - len(self._shapes[0])
        out = []
        for j, tangent in enumerate(tangents):
            if live:
                hv = torch.autograd.grad(
                    [grads[i] for i in live],
                    leaves,
                    grad_outputs=[tangent[i] for i in live],
                    retain_graph=j + 1 < len(tangents),
                    materialize_grads=True,
                )
            else:
                hv = tuple(torch.zeros_like(leaf) for leaf in leaves)
            lead_shape = leaves[0].shape[:lead]
            out.append(torch.cat([h.reshape(*lead_shape, -1) for h in hv], dim=-1))
        return out

    def loss(self, w: torch.Tensor) -> float:
        """L(w; D_r), the objective value over the whole retain set.

        Args:
            w: ``Tensor [p]`` flat parameters.

        Returns:
            The mean cross-entropy plus (wd/2)‖w‖², as a Python float.
        """
        w = self._check_w(w)
        total = torch.zeros((), dtype=torch.float64, device=w.device)
        with torch.no_grad():
            for xc, yc in self._chunks():
                total += self.objective.data_loss_sum(w, xc, yc).to(torch.float64)
            reg = self.objective.regularizer(w).to(torch.float64)
        return float(total / self.n + reg)

    def gradient(self, w: torch.Tensor) -> torch.Tensor:
        """g = ∇L(w; D_r), exactly over the whole retain set (METHOD §3 step 2).

        Args:
            w: ``Tensor [p]`` flat parameters.

        Returns:
            ``Tensor [p]``: (1/n)·Σ_chunks ∇(Σ_{i∈chunk} CE_i) + wd·w.
        """
        w = self._check_w(w)
        g = torch.zeros_like(w)
        for xc, yc in self._chunks():
            if self.closed_form:
                parts = mlp_grad_sum(self._split(w), xc, yc)
                g += torch.cat([part.reshape(-1) for part in parts])
            else:
                g += self._grad_sum(w, xc, yc)
        self.gradient_count += 1
        return g / self.n + self.weight_decay * w

    def _closed_form_sum(
        self, w: torch.Tensor, vs: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor
    ) -> torch.Tensor:
        """Closed-form (Σ_{i∈B_j} ∇²CE_i)·vs[j]; ``xb`` [k, b, d], ``yb`` [k, b]; returns [k, p]."""
        parts = mlp_hvp_sum(self._split(w), self._split(vs), xb, yb)
        return torch.cat([part.reshape(vs.shape[0], -1) for part in parts], dim=1)

    def _chunk_hvp_sum(
        self, w: torch.Tensor, vs: torch.Tensor, xc: torch.Tensor, yc: torch.Tensor
    ) -> torch.Tensor:
        """(Σ_{i∈chunk} ∇²CE_i)·vs[j] for every row j of ``vs`` [k, p]."""
        if self.closed_form:
            k = vs.shape[0]
            return self._closed_form_sum(
                w, vs, xc.unsqueeze(0).expand(k, *xc.shape), yc.unsqueeze(0).expand(k, -1)
            )
        if self.mode == "forward_over_reverse":

            def one(v_: torch.Tensor) -> torch.Tensor:
                out: torch.Tensor = jvp(lambda w_: self._grad_sum(w_, xc, yc), (w,), (v_,))[1]
                return out

            if vs.shape[0] == 1:
                return one(vs[0]).unsqueeze(0)
            return vmap(one)(vs)
        with torch.enable_grad():
            leaves = self._leaves(w)
            params = dict(zip(self._names, leaves, strict=True))
            loss = self.objective.data_loss_params(params, xc, yc, "sum")
            rows = self._double_backward(loss, leaves, [self._split(v_) for v_ in vs])
        return torch.stack(rows)

    def hvp(self, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """H·v with H = ∇²L(w; D_r), over the whole retain set in chunks.

        Args:
            w: ``Tensor [p]`` the point where the Hessian is taken.
            v: ``Tensor [p]`` the direction.

        Returns:
            ``Tensor [p]``: (1/n)·Σ_chunks (Σ_{i∈chunk} ∇²CE_i)·v + wd·v.
        """
        w = self._check_w(w)
        if v.shape != w.shape:
            raise ValueError(f"v has shape {tuple(v.shape)}, expected {tuple(w.shape)}")
        return self.hvp_batch(w, v.detach().unsqueeze(0))[0]

    def hvp_batch(self, w: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
        """H·vs[j] for k directions at once, full retain set in chunks.

        One forward/first backward per chunk serves all k directions. In the forward-over-reverse
        mode memory grows with k × ``chunk_size`` activations; lower ``chunk_size`` for large k.

        Args:
            w: ``Tensor [p]`` the point where the Hessian is taken.
            vs: ``Tensor [k, p]`` the directions, one per row.

        Returns:
            ``Tensor [k, p]``, row j = H·vs[j].
        """
        w = self._check_w(w)
        vs = self._check_vs(w, vs, "vs")
        out = torch.zeros_like(vs)
        for xc, yc in self._chunks():
            out += self._chunk_hvp_sum(w, vs, xc, yc)
        self.hvp_count += int(vs.shape[0])
        return out / self.n + self.weight_decay * vs

    def lissa_step_(
        self,
        w: torch.Tensor,
        vs: torch.Tensor,
        g: torch.Tensor,
        idx: torch.Tensor,
        damping: float,
        scale: float,
    ) -> None:
        """One LiSSA recursion for r chains, in place: vs[j] ← g + vs[j] − (H_{B_j} + λI)·vs[j]/S.

        The same arithmetic as ``vs·(1 − λ/S) + g − minibatch_hvp(w, vs, idx)/S`` ([Z24] §3.3),
        with the weight-decay and 1/|B| factors folded into the two scalar coefficients. For a
        plain ReLU MLP it uses the closed-form products and subtracts them per parameter block
        straight into ``vs`` (no [r, p] temporaries besides the products themselves); otherwise
        it falls back to :meth:`minibatch_hvp`.

        Args:
            w: ``Tensor [p]`` the point (not checked: the solver has checked it).
            vs: ``Tensor [r, p]`` the chains' iterates, updated in place.
            g: ``Tensor [p]`` the right-hand side.
            idx: ``LongTensor [r, b]`` the step's minibatch row indices, one row per chain.
            damping: λ.
            scale: S.
        """
        if not self.closed_form:
            hv = self.minibatch_hvp(w, vs, idx)
            vs.mul_(1.0 - damping / scale).add_(g).sub_(hv, alpha=1.0 / scale)
            return
        r, b = idx.shape
        flat = idx.reshape(-1)
        xb = self.x.index_select(0, flat).view(r, b, *self.x.shape[1:])
        yb = self.y.index_select(0, flat).view(r, b)
        parts = mlp_hvp_sum(self._split(w.detach()), self._split(vs), xb, yb)
        torch.add(g, vs, alpha=1.0 - (damping + self.weight_decay) / scale, out=vs)
        for view, part in zip(self._split(vs), parts, strict=True):
            view.sub_(part, alpha=1.0 / (scale * b))
        self.minibatch_hvp_count += r

    def minibatch_hvp(self, w: torch.Tensor, vs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Minibatch products H_{B_j}·vs[j] for r chains in one batched call ([Z24] §3.3).

        H_B = ∇²[(1/|B|)·Σ_{i∈B} CE_i](w) + wd·I is the Hessian of the objective on the minibatch B
        (same mean scale as :meth:`hvp`, so E[H_B] = H when B is drawn uniformly from D_r).

        Args:
            w: ``Tensor [p]`` the point where the Hessians are taken.
            vs: ``Tensor [r, p]`` one direction per chain.
            idx: ``LongTensor [r, b]`` retain-set row indices of each chain's minibatch.

        Returns:
            ``Tensor [r, p]``, row j = H_{B_j}·vs[j].
        """
        w = self._check_w(w)
        vs = self._check_vs(w, vs, "vs")
        if idx.dim() != 2 or idx.shape[0] != vs.shape[0]:
            raise ValueError(f"idx has shape {tuple(idx.shape)}, expected ({vs.shape[0]}, b)")
        xb = self.x[idx]
        yb = self.y[idx]
        if self.mode == "forward_over_reverse":

            def one_chain(v_: torch.Tensor, xb_: torch.Tensor, yb_: torch.Tensor) -> torch.Tensor:
                out: torch.Tensor = jvp(lambda w_: self._grad_mean(w_, xb_, yb_), (w,), (v_,))[1]
                return out

            hv = vmap(one_chain)(vs, xb, yb)
        elif self.closed_form:
            hv = self._closed_form_sum(w, vs, xb, yb) / idx.shape[1]
        else:
            with torch.enable_grad():
                # One parameter copy per chain: the summed loss has a block-diagonal Hessian
                # whose j-th block is the Hessian of chain j's minibatch loss.
                leaves = self._leaves(w.unsqueeze(0).expand(vs.shape[0], -1))
                names = self._names

                def chain_loss(
                    chain_params: list[torch.Tensor], xb_: torch.Tensor, yb_: torch.Tensor
                ) -> torch.Tensor:
                    params = dict(zip(names, chain_params, strict=True))
                    return self.objective.data_loss_params(params, xb_, yb_, "mean")

                total = vmap(chain_loss)(leaves, xb, yb).sum()
                (hv,) = self._double_backward(total, leaves, [self._split(vs)])
        self.minibatch_hvp_count += int(vs.shape[0])
        return hv + self.weight_decay * vs
