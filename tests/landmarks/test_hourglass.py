import pytest
import torch

from faceforge.landmarks.hourglass import StackedHourglass, create_landmark_network, list_landmark_networks


def test_registered_and_shaped_as_described():
    assert "hourglass" in list_landmark_networks()
    net = create_landmark_network("hourglass", input_size=64)
    outs = net(torch.randn(2, 3, 64, 64))
    # the stem's head and one per hourglass block, heatmaps at the input's resolution
    assert outs.shape == (2, 4, 5, 64, 64)
    assert isinstance(net.stem, torch.nn.Conv2d) and net.stem.kernel_size == (1, 1) and net.stem.stride == (1, 1)


def test_forward_backward_and_state_dict_round_trip():
    torch.manual_seed(0)
    a, b = StackedHourglass(channels=16, stacks=2), StackedHourglass(channels=16, stacks=2)
    x = torch.randn(2, 3, 32, 32)
    loss = a(x).square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in a.parameters())
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))


def test_input_not_divisible_by_the_pooling_is_refused():
    with pytest.raises(ValueError, match="divisible by 4"):
        StackedHourglass()(torch.randn(1, 3, 30, 30))
