"""The training objective as a pure function of the flat parameter vector.

METHOD §1 defines the objective over a sample set S as

    L(w; S) = (1/|S|) · Σ_{(x, y) ∈ S} CE(f_w(x), y) + (wd/2) · ‖w‖²,

the mean cross-entropy plus the squared-norm weight-decay term (not the un-squared norm of the
paper's public code, METHOD §9). Every curvature quantity of the method (the gradient g, the Hessian
H and its minibatch estimates, [Z24] §3.3) is a derivative of this one function, so the gradient
and the Hessian share its scale by construction.

The function is pure in ``w``: it goes through :func:`torch.func.functional_call`, so
``torch.func.grad``, ``jvp`` and ``vmap`` can differentiate and batch it without touching the
module's own parameters.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from app.unlearning.params import flatten_params, unflatten

__all__ = ["Objective"]


class Objective:
    """L(w; S) = mean cross-entropy over S + (wd/2)·‖w‖², as a function of flat ``w`` [p].

    The module is switched to eval mode (METHOD §2: BatchNorm in eval mode, no dropout, for every
    curvature computation). Its own parameters are never modified; buffers (e.g. BatchNorm running
    statistics) are read from the module as they are and passed to every functional call.

    Args:
        model: The network; its trainable parameters, in ``named_parameters()`` order, define the
            layout of ``w`` (see :mod:`app.unlearning.params`).
        weight_decay: wd ≥ 0, the coefficient of the (wd/2)·‖w‖² term (METHOD §1); the training
            weight decay.

    Raises:
        ValueError: If ``weight_decay`` is negative or not finite.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 2, bias=False).double()
        >>> with torch.no_grad():
        ...     _ = model.weight.zero_()
        >>> obj = Objective(model, weight_decay=0.0)
        >>> x = torch.ones(3, 2, dtype=torch.float64); y = torch.tensor([0, 1, 0])
        >>> round(float(obj.loss(obj.initial_params(), x, y)), 6)  # log 2 at zero logits
        0.693147
    """

    def __init__(self, model: nn.Module, weight_decay: float) -> None:
        if not math.isfinite(weight_decay) or weight_decay < 0:
            raise ValueError(f"weight_decay must be finite and >= 0, got {weight_decay!r}")
        model.eval()
        self.model = model
        self.weight_decay = float(weight_decay)
        self.num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def initial_params(self) -> torch.Tensor:
        """The module's current trainable parameters as a detached flat copy, ``Tensor [p]``."""
        return flatten_params(self.model)

    def buffers(self) -> dict[str, torch.Tensor]:
        """The module's buffers (BatchNorm running statistics), passed explicitly to every
        functional call: they are constants of L, not part of w, and in eval mode BatchNorm only
        reads them (METHOD §2), so no curvature computation changes them."""
        return dict(self.model.named_buffers())

    def criterion(self, logits: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
        """The per-sample loss reduced over the batch: cross-entropy (METHOD §1).

        Args:
            logits: ``Tensor [b, num_classes]``.
            y: ``LongTensor [b]`` class labels.
            reduction: ``"sum"`` or ``"mean"``.
        """
        return F.cross_entropy(logits, y, reduction=reduction)

    def logits(self, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Network outputs at parameters ``w``.

        Args:
            w: ``Tensor [p]`` flat parameters.
            x: ``Tensor [b, ...]`` inputs.

        Returns:
            ``Tensor [b, num_classes]`` logits.
        """
        out: torch.Tensor = functional_call(
            self.model, (unflatten(self.model, w), self.buffers()), (x,))
        return out

    def data_loss_params(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, reduction: str
    ) -> torch.Tensor:
        """The data term from named parameter tensors instead of a flat vector (a scalar).

        Differentiating with respect to separate per-parameter tensors avoids the cost of
        scattering gradients back into one flat vector (one zero-filled [p] buffer per parameter
        per backward pass); :mod:`app.unlearning.hvp` uses it for double-backward products.

        Args:
            params: ``{name: Tensor}`` for every trainable parameter (shapes as in the module).
            x: ``Tensor [b, ...]`` inputs.
            y: ``LongTensor [b]`` labels.
            reduction: ``"sum"`` or ``"mean"``.
        """
        logits: torch.Tensor = functional_call(self.model, (params, self.buffers()), (x,))
        return self.criterion(logits, y, reduction)

    def data_loss_sum(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ_i CE(f_w(x_i), y_i): the summed cross-entropy, no regulariser (a scalar).

        Args:
            w: ``Tensor [p]`` flat parameters.
            x: ``Tensor [b, ...]`` inputs.
            y: ``LongTensor [b]`` class labels.
        """
        return self.criterion(self.logits(w, x), y, "sum")

    def data_loss_mean(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(1/b)·Σ_i CE(f_w(x_i), y_i): the mean cross-entropy, no regulariser (a scalar)."""
        return self.criterion(self.logits(w, x), y, "mean")

    def regularizer(self, w: torch.Tensor) -> torch.Tensor:
        """(wd/2)·‖w‖² (a scalar)."""
        return 0.5 * self.weight_decay * torch.dot(w, w)

    def loss(self, w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L(w; S) = mean CE over S + (wd/2)·‖w‖² (METHOD §1), a scalar.

        Args:
            w: ``Tensor [p]`` flat parameters.
            x: ``Tensor [b, ...]`` the inputs of S.
            y: ``LongTensor [b]`` the labels of S.
        """
        return self.data_loss_mean(w, x, y) + self.regularizer(w)

    __call__ = loss
