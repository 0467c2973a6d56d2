"""The numpy BiLSTM for one sentence (spacy_mat.host_lstm) against torch.nn.LSTM."""
import numpy as np
import pytest
import torch

from spacy_mat import host_lstm
from spacy_mat.network import BiLSTM


def _weights(lstm):
    return host_lstm.layer_weights(*[[getattr(lstm, f"{n}_l0{s}").detach().numpy() for s in ("", "_reverse")]
                                     for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")])


@pytest.mark.parametrize("length", [1, 2, 17])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_bilstm_layer_matches_torch(length, dtype):
    torch.manual_seed(length)
    lstm = torch.nn.LSTM(7, 5, batch_first=True, bidirectional=True).to(dtype)
    with torch.no_grad():
        for p in lstm.parameters():
            p.normal_(0, 1.5)  # large weights: saturated gates too
    x = torch.randn(1, length, 7, dtype=dtype) * 3
    expected, _ = lstm(x)
    got = host_lstm.bilstm_layer(x[0].numpy(), _weights(lstm))
    assert got.dtype == x.numpy().dtype and got.shape == (length, 10)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(got, expected[0].detach().numpy(), atol=tol, rtol=tol)


def test_empty_sequence():
    lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    assert host_lstm.bilstm_layer(np.zeros((0, 3), np.float32), _weights(lstm)).shape == (0, 8)


def test_bilstm_module_takes_the_host_loop_for_one_sentence_in_prediction():
    """Two layers: the numpy path equals torch's; it runs only in eval mode
    without autograd and for one row; its weight cache follows train() and
    in-place edits."""
    torch.manual_seed(0)
    module = BiLSTM(6, 4, depth=2, dropout=0.3).eval()
    x = torch.randn(1, 9, 6)
    lengths = torch.tensor([9])
    with torch.inference_mode():
        module.host_single = False
        expected = module(x, lengths)
        module.host_single = True
        assert module._runs_on_host(x)
        got = module(x, lengths)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not module._runs_on_host(torch.randn(2, 9, 6))
    module.train()
    assert module._host_cache is None and not module._runs_on_host(x)
    module.eval()
    with torch.no_grad():
        module(x, lengths)
        module.layers[0].weight_hh_l0.add_(0.5)  # an in-place edit: the version counter moves
        changed = module(x, lengths)
        module.host_single = False
        torch.testing.assert_close(changed, module(x, lengths), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(changed, expected, atol=1e-3)
