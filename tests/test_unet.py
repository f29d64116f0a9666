"""The comparison U-Net: the size the original material actually trained."""
import pytest
import torch

from retina_lib import LinkNet, count_parameters
from retina_lib.unet import UNet


def test_unet_is_the_31m_parameter_model_and_linknet_is_smaller():
    unet_parameters = count_parameters(UNet())
    assert abs(unet_parameters - 31.0e6) / 31.0e6 < 0.01
    assert unet_parameters > 2.5 * count_parameters(LinkNet())


def test_unet_output_shape_and_size_check():
    net = UNet(width=8).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 64, 48)).shape == (1, 1, 64, 48)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.rand(1, 3, 65, 48))
