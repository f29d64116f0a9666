"""model_stats measures shapes, parameters, FLOPs and receptive fields correctly."""
import pytest
import torch
from torch import nn

from retina_lib import LinkNet, count_parameters
from retina_lib.model_stats import (
    DECODER_BLOCKS, ENCODER_BLOCKS, LINKNET_BLOCKS, LINKNET_STAGES, Layer, count_flops, flops_by_block,
    linknet_encoder_receptive_fields, on_meta, parameters_by_block, receptive_fields, record_shapes,
)


def test_receptive_fields_of_the_encoder_match_a_hand_computation():
    # size <- size + (k - 1) * stride; stride <- stride * s. By hand:
    # conv 7x7 /2: 1 + 6 = 7, stride 2; max-pool 3x3 /2: 7 + 2*2 = 11, stride 4;
    # encoder1, four 3x3: 11 + 4*2*4 = 43; encoder2: 43 + 2*4 = 51 (stride 8), + 3*2*8 = 99;
    # encoder3: 99 + 2*8 = 115 (stride 16), + 3*2*16 = 211; encoder4: 211 + 2*16 = 243 (stride 32), + 3*2*32 = 435.
    fields = linknet_encoder_receptive_fields(on_meta(LinkNet))
    assert {name: (f.size, f.stride) for name, f in fields.items()} == {
        "initial": (7, 2), "pool": (11, 4), "encoder1": (43, 4),
        "encoder2": (99, 8), "encoder3": (211, 16), "encoder4": (435, 32),
    }


def test_receptive_field_formula_agrees_with_the_gradient_of_a_conv_chain():
    # With all-one weights and no nonlinearity nothing cancels: the input pixels with a
    # non-zero gradient for one output position are exactly its receptive field.
    specs = [(3, 1), (3, 2), (5, 2), (3, 1)]
    chain = nn.Sequential(*[nn.Conv2d(1, 1, k, stride=s, bias=False) for k, s in specs])
    for conv in chain:
        nn.init.ones_(conv.weight)
    image = torch.zeros(1, 1, 64, 64, requires_grad=True)
    output = chain(image)
    output[0, 0, 3, 3].backward()
    rows = torch.nonzero(image.grad[0, 0].abs().sum(dim=1)).flatten()
    measured = int(rows.max() - rows.min() + 1)
    expected = receptive_fields([Layer(f"conv{i}", k, s) for i, (k, s) in enumerate(specs)])[-1]
    assert measured == expected.size == 1 + 2 * 1 + 2 * 1 + 4 * 2 + 2 * 4  # by hand: 21
    assert expected.stride == 4


def test_receptive_fields_refuses_a_zero_stride():
    with pytest.raises(ValueError, match="stride 0"):
        receptive_fields([Layer("bad", 3, 0)])


def test_record_shapes_shows_the_links_and_removes_its_hooks():
    model = on_meta(LinkNet)
    shapes = record_shapes(model, LINKNET_STAGES, 512)
    assert shapes["encoder4"][1] == (1, 512, 16, 16)
    assert shapes["classifier"][1] == (1, 1, 512, 512)
    for decoder, encoder in zip(DECODER_BLOCKS, reversed(ENCODER_BLOCKS)):
        assert shapes[decoder][1] == shapes[encoder][0]  # what makes the addition possible
    assert all(not module._forward_hooks for module in model.modules())


def test_record_shapes_names_a_module_that_never_ran():
    model = on_meta(LinkNet)
    model.unused = nn.Identity()
    with pytest.raises(ValueError, match="unused"):
        record_shapes(model, ["encoder1", "unused"], 64)


def test_parameters_by_block_adds_up_and_refuses_a_missing_block():
    model = LinkNet()
    counts = parameters_by_block(model, LINKNET_BLOCKS)
    assert sum(counts.values()) == count_parameters(model)
    assert counts["encoder4"] == count_parameters(model.encoder4)
    without_final = {name: parts for name, parts in LINKNET_BLOCKS.items() if name != "final"}
    with pytest.raises(ValueError, match="missing or counted twice"):
        parameters_by_block(model, without_final)


def test_count_flops_of_one_convolution_matches_the_formula():
    conv = nn.Sequential(nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False))
    total, per_module = count_flops(conv, 16, 20)
    assert total == 2 * 8 * 3 * 9 * 16 * 20  # 2 FLOPs per multiply-add, one per output value and weight
    assert per_module["0"] == total


def test_linknet_block_flops_add_up_to_the_total():
    total, per_module = count_flops(on_meta(LinkNet), 512)
    blocks = flops_by_block(per_module, LINKNET_BLOCKS)
    assert sum(blocks.values()) == total
    # encoder2..4 each halve the resolution and double the channels: the same cost
    assert blocks["encoder2"] == blocks["encoder3"] == blocks["encoder4"]
    # a 360-row image is padded to 384 rows: the count follows the padded size
    padded, _ = count_flops(on_meta(LinkNet), 360, 640)
    same, _ = count_flops(on_meta(LinkNet), 384, 640)
    assert padded == same


def test_sides_down_rounds_up_like_the_network():
    from retina_lib.model_stats import sides_down

    assert sides_down(512) == [512, 256, 128, 64, 32, 16]
    assert sides_down(584) == [584, 292, 146, 73, 37, 19]
    model = on_meta(LinkNet)
    # the real layers agree: encoder3's output of a 584-row image (padding skipped) has 37 rows
    with torch.device("meta"):
        e3 = model.encoder3(model.encoder2(model.encoder1(model.pool(model.initial(torch.zeros(1, 3, 584, 64))))))
    assert e3.shape[2] == sides_down(584)[4]
