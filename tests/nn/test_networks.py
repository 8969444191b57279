"""The PixNet network: map size and sign, sliding attention, tiles that agree."""

import pytest
import torch

from pixnet.nn import PixNetNetwork, create_encoder
from pixnet.nn.decoder import LinearAttention


@pytest.mark.parametrize("size", [(64, 64), (100, 77), (33, 45), (160, 96)])
def test_dense_map_has_input_size_and_is_non_negative(size):
    torch.manual_seed(0)
    network = PixNetNetwork(*create_encoder("resnet18"), n_genes=5, decoder_width=32)
    out = network(torch.rand(2, 3, *size))
    assert out.shape == (2, 5, *size)
    assert (out >= 0).all()


def test_sliding_attention_is_global_attention_over_the_window_around_each_pixel():
    torch.manual_seed(0)
    attention = LinearAttention(8)
    x = torch.rand(1, 8, 20, 24)
    sliding = attention(x, window=8)  # each pixel sees the 9 x 9 square centred on it
    for y, x0 in [(10, 12), (4, 4), (0, 23)]:
        rows, cols = slice(max(y - 4, 0), y + 5), slice(max(x0 - 4, 0), x0 + 5)
        local = attention(x[..., rows, cols])
        torch.testing.assert_close(sliding[..., y, x0], local[..., y - rows.start, x0 - cols.start])
    torch.testing.assert_close(attention(x, window=24), attention(x))  # no larger than the window: global


def test_overlapping_tiles_agree_away_from_their_borders():
    torch.manual_seed(0)
    network = PixNetNetwork(*create_encoder("resnet18"), n_genes=3, decoder_width=32, attention_window=64).eval()
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        whole = network(image)
        tile = network(image[..., 32:, 32:])
    # away from the tile's border, where zero padding differs, pixels see the same window wherever the tile starts
    torch.testing.assert_close(tile[..., 96:160, 96:160], whole[..., 128:192, 128:192], atol=1e-3, rtol=0)
