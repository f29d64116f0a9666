"""LinkNet: the paper's architecture, any input size, clear errors, sigmoid head."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from retina_lib import LinkNet, count_parameters, probabilities
from retina_lib.model import BasicBlock, DecoderBlock

PAPER_PARAMETERS = 11_533_000


@pytest.fixture(scope="module")
def net() -> LinkNet:
    torch.manual_seed(0)
    return LinkNet().eval()


def test_parameter_count_matches_the_paper(net):
    assert abs(count_parameters(net) - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.005


def test_encoder_is_resnet18_body_and_decoder_is_linknet(net):
    # Four stages of two BasicBlocks, 64-128-256-512 channels, first one unstrided.
    for stage, channels in zip([net.encoder1, net.encoder2, net.encoder3, net.encoder4], [64, 128, 256, 512]):
        assert len(stage) == 2 and all(isinstance(block, BasicBlock) for block in stage)
        assert stage[1].conv2.out_channels == channels
    assert net.encoder1[0].conv1.stride == (1, 1)
    assert all(stage[0].conv1.stride == (2, 2) for stage in [net.encoder2, net.encoder3, net.encoder4])
    # Decoder blocks m -> m/4 -> m/4 -> n; the last one keeps the resolution.
    for block, (m, n) in zip([net.decoder4, net.decoder3, net.decoder2, net.decoder1],
                             [(512, 256), (256, 128), (128, 64), (64, 64)]):
        assert isinstance(block, DecoderBlock)
        assert block.reduce.conv.in_channels == m and block.reduce.conv.out_channels == m // 4
        assert block.expand.conv.out_channels == n
    assert net.decoder1.upsample.deconv.stride == (1, 1)
    assert net.decoder4.upsample.deconv.stride == (2, 2)
    assert isinstance(net.classifier, nn.ConvTranspose2d) and net.classifier.kernel_size == (2, 2)


def test_skips_are_additions_not_concatenations(net):
    # With concatenation the decoder inputs would be wider than the encoder outputs.
    assert net.decoder3.reduce.conv.in_channels == net.encoder3[1].conv2.out_channels
    assert net.decoder2.reduce.conv.in_channels == net.encoder2[1].conv2.out_channels


@pytest.mark.parametrize("height, width", [(512, 512), (584, 565), (960, 999), (32, 32), (33, 47)])
def test_output_has_the_input_size(net, height, width):
    with torch.no_grad():
        logits = net(torch.rand(1, 3, height, width))
    assert logits.shape == (1, 1, height, width)
    assert torch.isfinite(logits).all()


def test_padding_does_not_leak_into_the_crop(net):
    # The same image padded by the caller or by the model gives the same logits.
    image = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        inside = net(image)
        padded = net(torch.nn.functional.pad(image, (0, 6, 0, 26)))[:, :, :70, :90]
    torch.testing.assert_close(inside, padded)


def test_configurable_channels_and_classes():
    net = LinkNet(in_channels=1, num_classes=3).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, 64, 96))
    assert out.shape == (2, 3, 64, 96)
    prob = probabilities(out)
    torch.testing.assert_close(prob.sum(dim=1), torch.ones(2, 64, 96))


@pytest.mark.parametrize(
    "shape, words",
    [((3, 64, 64), "4-D"), ((1, 1, 64, 64), "3 input channels"), ((1, 3, 31, 64), "at least 32")],
)
def test_wrong_input_raises_a_clear_error(net, shape, words):
    with pytest.raises(ValueError, match=words):
        net(torch.rand(*shape))


def test_one_class_uses_a_sigmoid_never_a_softmax():
    logits = torch.tensor([[[[-3.0, 0.0], [2.0, 5.0]]]])
    torch.testing.assert_close(probabilities(logits), torch.sigmoid(logits))
    # The pitfall: softmax over one channel is 1 everywhere, whatever the logits.
    assert torch.equal(torch.softmax(logits, dim=1), torch.ones_like(logits))


def test_gradients_reach_the_first_layer():
    net = LinkNet().train()
    loss = net(torch.rand(2, 3, 64, 64)).sigmoid().mean()
    loss.backward()
    assert net.initial.conv.weight.grad.abs().sum() > 0


def test_state_dict_keys_are_readable_and_round_trip(net):
    keys = list(net.state_dict())
    assert keys[0] == "initial.conv.weight"
    assert "decoder4.reduce.conv.weight" in keys and "classifier.weight" in keys
    fresh = LinkNet()
    fresh.load_state_dict(net.state_dict())
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, net.state_dict()[name])


# --------------------------------------------------------------------------
# Golden output: a refactoring that changes the network fails here
# --------------------------------------------------------------------------

#: The stored answers: LinkNet's exact parameter count, its state_dict keys and
#: shapes (the shipped weights load by them), and summaries of its logits for
#: one fixed input. Rewrite it only after a deliberate change of the network:
#: ``python tests/test_model.py``.
GOLDEN_FILE = Path(__file__).resolve().parent / "golden" / "linknet_64x64.json"

#: How far the logits may drift between CPUs and torch builds (float32
#: convolutions sum in different orders): far below what any change of a
#: layer, a skip or an initialisation moves them.
GOLDEN_RELATIVE_TOLERANCE = 1e-4


def golden_values() -> dict:
    """What :data:`GOLDEN_FILE` stores, computed from the current LinkNet on the CPU."""
    torch.manual_seed(0)
    model = LinkNet().eval()
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(image).double()
    return {
        "input": "torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))",
        "model": "torch.manual_seed(0); LinkNet().eval()",
        "parameter_count": count_parameters(model),
        "state_dict": [[name, list(tensor.shape)] for name, tensor in model.state_dict().items()],
        "logits_shape": list(logits.shape),
        "logits_sum": logits.sum().item(),
        "logits_abs_sum": logits.abs().sum().item(),
        "logits_every_16th_pixel": logits[0, 0, ::16, ::16].flatten().tolist(),
    }


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN_FILE.read_text())


@pytest.fixture(scope="module")
def current() -> dict:
    return golden_values()


def test_the_parameter_count_is_exactly_the_stored_one(golden, current):
    assert current["parameter_count"] == golden["parameter_count"]


def test_state_dict_names_and_shapes_are_the_stored_ones(golden, current):
    """The weights shipped and saved by earlier runs load by these names and shapes."""
    assert current["state_dict"] == golden["state_dict"]


def test_logits_for_the_fixed_input_are_the_stored_ones(golden, current):
    assert current["logits_shape"] == golden["logits_shape"]
    scale = golden["logits_abs_sum"]
    assert current["logits_abs_sum"] == pytest.approx(scale, rel=GOLDEN_RELATIVE_TOLERANCE)
    assert abs(current["logits_sum"] - golden["logits_sum"]) <= GOLDEN_RELATIVE_TOLERANCE * scale
    typical = scale / math.prod(golden["logits_shape"])
    np.testing.assert_allclose(current["logits_every_16th_pixel"], golden["logits_every_16th_pixel"],
                               rtol=GOLDEN_RELATIVE_TOLERANCE, atol=GOLDEN_RELATIVE_TOLERANCE * typical)


if __name__ == "__main__":
    GOLDEN_FILE.parent.mkdir(exist_ok=True)
    values = golden_values()
    lines = [f" {json.dumps(key)}: {json.dumps(value)}" for key, value in values.items() if key != "state_dict"]
    lines.append(' "state_dict": [\n' + ",\n".join(f"  {json.dumps(entry)}" for entry in values["state_dict"]) + "\n ]")
    GOLDEN_FILE.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one state_dict entry a line: readable diffs
    print(f"wrote {GOLDEN_FILE}")
