import torch

from napari_segflow.model.memory import ConvGRUCell


def test_cell_follows_the_gru_equations():
    torch.manual_seed(1)
    cell = ConvGRUCell(3, 4, 3)
    x, h = torch.randn(2, 3, 5, 6), torch.randn(2, 4, 5, 6)
    new_h, gates = cell(x, h, return_gates=True)
    wx = cell.input_convs(x)
    xz, xr, xh = wx[:, :4], wx[:, 4:8], wx[:, 8:]
    wh = cell.hidden_gate_convs(h)
    z = torch.sigmoid(xz + wh[:, :4])
    r = torch.sigmoid(xr + wh[:, 4:])
    candidate = torch.tanh(xh + cell.candidate_conv(r * h))
    torch.testing.assert_close(gates.update, z)
    torch.testing.assert_close(gates.reset, r)
    torch.testing.assert_close(new_h, (1 - z) * h + z * candidate)


def test_closed_update_gate_keeps_the_state():
    cell = ConvGRUCell(2, 2, 1)
    with torch.no_grad():
        cell.input_convs.bias[:2].fill_(-100.0)  # update gate z -> 0
    x, h = torch.randn(1, 2, 4, 4), torch.randn(1, 2, 4, 4)
    new_h, _ = cell(x, h)
    torch.testing.assert_close(new_h, h)


def test_run_returns_states_in_frame_order_both_ways():
    cell = ConvGRUCell(2, 3, 3)
    inputs = [torch.randn(1, 2, 4, 4) for _ in range(3)]
    forward, _ = cell.run(inputs)
    backward, gates = cell.run(inputs, reverse=True, return_gates=True)
    torch.testing.assert_close(forward[0], cell(inputs[0])[0])
    torch.testing.assert_close(backward[2], cell(inputs[2])[0])
    torch.testing.assert_close(backward[1], cell(inputs[1], backward[2])[0])
    assert all(g is not None for g in gates)
