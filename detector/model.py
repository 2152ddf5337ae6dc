"""The LSTM autoencoder: a window of encoded records in, the window's newest record reconstructed out.

The encoder LSTM reads the window (each step sees the record and a present/padding flag); its final
state — and, with ``record_path``, a dense projection of the newest record itself, so the per-record
code does not have to squeeze through the LSTM's gates — is squeezed through a small latent code; a
dense decoder rebuilds the *newest* record from it. A
record's score is the error of its own reconstruction — the context helps explain it but is never scored,
so an attack next to a normal record does not make the normal record's score its own. Training hardens
this (see :mod:`detector.train`): contexts are truncated, shuffled and corrupted while the target stays
clean, so the model learns not to let an odd neighbour spoil a record's reconstruction.

A trained model is an :class:`AutoencoderEnsemble` of ``members`` such autoencoders, identical in shape,
trained from different seeds on the same split; a record's per-column error is the mean of the members'.
One training run can land on weights that happen to rebuild one attack type well (seen on a KDD'99 flood,
see :class:`detector.train.TrainConfig`); the members rarely agree on that by chance, so the ensemble's
score does not hang on one seed. Scoring cost grows with ``members`` (``benchmarks/throughput.py``
measures the whole path; at window 1 scoring skips the LSTM's recurrent product, see
:meth:`LSTMAutoencoder.forward_one_step`).

>>> import torch
>>> net = LSTMAutoencoder(ModelConfig(n_features=5, window=4, hidden=8, latent=2))
>>> net(torch.zeros(3, 4, 5), torch.ones(3, 4)).shape
torch.Size([3, 5])
>>> squared_errors(AutoencoderEnsemble(ModelConfig(n_features=5, hidden=8, latent=2, members=3)),
...                torch.zeros(3, 1, 5), torch.ones(3, 1)).shape
torch.Size([3, 5])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn

from flowsentinel.detector.errors import ArtifactError, ConfigError


@dataclass(frozen=True)
class ModelConfig:
    n_features: int
    # No defaults for the sizes: training always passes TrainConfig's (its comment says how they were
    # chosen), and a second default here went stale twice.
    hidden: int
    latent: int
    window: int = 1
    layers: int = 1
    # Experimental, off by default: also feed the newest record to the latent code through a dense layer.
    # On validation splits carved from KDDTrain+ and the KDD'99 10% file it scored slightly higher
    # (AUROC 0.99155 vs 0.99140 and 0.99750 vs 0.99670), but it made a tiny model more sensitive to
    # attack neighbours (test_attack_neighbours_... failed: 3.7% > 3% above the threshold), so it is
    # not the default until that is understood.
    record_path: bool = False
    # Autoencoders in the ensemble (see the module docstring). 1 for every artifact before format 3.
    members: int = 1

    def __post_init__(self) -> None:
        for name in ("n_features", "window", "hidden", "latent", "layers", "members"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"model {name} = {value!r} must be a positive integer")
        if self.latent > self.hidden:
            raise ConfigError(f"model latent = {self.latent} must not exceed hidden = {self.hidden}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        try:
            return cls(**data)
        except (TypeError, ConfigError) as exc:
            raise ArtifactError(f"model config is not valid: {exc}") from None


class LSTMAutoencoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = nn.LSTM(
            config.n_features + 1, config.hidden, num_layers=config.layers, batch_first=True
        )
        self.record = nn.Linear(config.n_features, config.hidden) if config.record_path else None
        width = config.hidden * (2 if config.record_path else 1)
        self.to_latent = nn.Sequential(nn.Linear(width, config.latent), nn.Tanh())
        self.decoder = nn.Sequential(
            nn.Linear(config.latent, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.n_features),
        )

    def forward(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """windows (B, W, F), mask (B, W) → reconstruction of windows[:, -1] (B, F)."""
        steps = torch.cat([windows, mask.unsqueeze(-1)], dim=-1)
        out, _ = self.encoder(steps)
        code = out[:, -1]
        if self.record is not None:
            code = torch.cat([code, torch.relu(self.record(windows[:, -1]))], dim=-1)
        return self.decoder(self.to_latent(code))

    def forward_one_step(self, steps: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` for windows of one record (the default), given ``steps`` (B, F + 1): the record
        and its present flag. From the zero initial state an LSTM step is its input projection alone, so
        the recurrent product (hidden × 4·hidden a record, most of the encoder's work) is skipped. Equal to
        :meth:`forward` up to float rounding (a test holds them together); single-layer models only."""
        enc = self.encoder
        w_ih, b_ih, b_hh = (
            cast(torch.Tensor, getattr(enc, n)) for n in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0")
        )
        gates = torch.addmm(b_ih + b_hh, steps, w_ih.t())
        i, _, g, o = gates.chunk(4, dim=1)  # the forget gate acts on the zero cell state: nothing
        code = torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))
        if self.record is not None:
            code = torch.cat([code, torch.relu(self.record(steps[:, :-1]))], dim=-1)
        return self.decoder(self.to_latent(code))


class AutoencoderEnsemble(nn.Module):
    """``config.members`` :class:`LSTMAutoencoder` s of one shape; see :func:`squared_errors`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(LSTMAutoencoder(config) for _ in range(config.members))


def squared_errors(
    net: LSTMAutoencoder | AutoencoderEnsemble, windows: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per-column squared reconstruction error of each window's newest record, (B, F): for an ensemble
    the mean over its members of each member's own error (not the error of an averaged reconstruction).

    Without gradients (scoring, validation, calibration), windows of one record take
    :meth:`LSTMAutoencoder.forward_one_step`; training's forward pass is unchanged."""
    target = windows[:, -1]
    members = [net] if isinstance(net, LSTMAutoencoder) else [cast(LSTMAutoencoder, m) for m in net.members]
    if windows.shape[1] == 1 and net.config.layers == 1 and not torch.is_grad_enabled():
        steps = torch.cat([target, mask[:, -1:]], dim=-1)
        total = (members[0].forward_one_step(steps) - target) ** 2
        for member in members[1:]:
            total += (member.forward_one_step(steps) - target) ** 2
    else:
        total = (members[0](windows, mask) - target) ** 2
        for member in members[1:]:
            total += (member(windows, mask) - target) ** 2
    return total / len(members) if len(members) > 1 else total
