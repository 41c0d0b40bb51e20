"""ConvGRU visual memory (Tokmakov, Schmid, Alahari, IJCV 2019, §5, equations 1-4).

    z = sigmoid(W_xz * x + W_hz * h)          update gate
    r = sigmoid(W_xr * x + W_hr * h)          reset gate
    h~ = tanh(W_xh * x + W_hh * (r . h))      candidate state
    h' = (1 - z) . h + z . h~

The six convolutions are stored as three: the x-side ones stacked, the two h-side gate
ones stacked, and the one on r . h. Bidirectional use runs the same cell forward and
backward over a clip (shared weights) and concatenates the two states per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class GateActivations:
    """Gates of one step, each (B, C, h, w) in [0, 1]."""

    reset: torch.Tensor
    update: torch.Tensor


class ConvGRUCell(nn.Module):
    def __init__(self, input_channels: int, hidden_channels: int, kernel: int) -> None:
        super().__init__()
        padding = kernel // 2
        self.hidden_channels = hidden_channels
        self.input_convs = nn.Conv2d(input_channels, 3 * hidden_channels, kernel, 1, padding)
        self.hidden_gate_convs = nn.Conv2d(hidden_channels, 2 * hidden_channels, kernel, 1, padding, bias=False)
        self.candidate_conv = nn.Conv2d(hidden_channels, hidden_channels, kernel, 1, padding, bias=False)

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[0], self.hidden_channels, x.shape[2], x.shape[3])

    def forward(
        self, x: torch.Tensor, hidden: torch.Tensor | None = None, return_gates: bool = False
    ) -> tuple[torch.Tensor, GateActivations | None]:
        """x: (B, C_in, h, w); hidden: (B, C, h, w) or None for zeros -> (new hidden, gates or None)."""
        if hidden is None:
            hidden = self.initial_state(x)
        x_update, x_reset, x_candidate = self.input_convs(x).chunk(3, dim=1)
        h_update, h_reset = self.hidden_gate_convs(hidden).chunk(2, dim=1)
        update = torch.sigmoid(x_update + h_update)
        reset = torch.sigmoid(x_reset + h_reset)
        candidate = torch.tanh(x_candidate + self.candidate_conv(reset * hidden))
        new_hidden = (1 - update) * hidden + update * candidate
        gates = GateActivations(reset=reset, update=update) if return_gates else None
        return new_hidden, gates

    def run(
        self, inputs: list[torch.Tensor], reverse: bool = False, return_gates: bool = False
    ) -> tuple[list[torch.Tensor], list[GateActivations | None]]:
        """Run over a clip; outputs are in frame order whichever way the memory walked."""
        order = range(len(inputs) - 1, -1, -1) if reverse else range(len(inputs))
        hiddens: list[torch.Tensor | None] = [None] * len(inputs)
        gates: list[GateActivations | None] = [None] * len(inputs)
        hidden = None
        for t in order:
            hidden, gates[t] = self(inputs[t], hidden, return_gates)
            hiddens[t] = hidden
        return hiddens, gates
