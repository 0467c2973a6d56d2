import numpy as np
import torch

from spacy_mat.network import (BiLSTM, CharCNN, CharCNNBiLSTMCRF, NormalizedEmbedding,
                               VariationalDropout, length_mask)
from spacy_mat.tags import allowed_transitions, bio_tag_names


def test_normalized_embedding_weighted_moments():
    torch.manual_seed(0)
    counts = [0, 5, 0, 100, 3, 1, 40]
    emb = NormalizedEmbedding(len(counts), 8, counts)
    table = emb.normalized_table()
    f = torch.tensor(counts, dtype=torch.float32) / sum(counts)
    mean = f @ table
    var = f @ (table - mean) ** 2
    assert torch.allclose(mean, torch.zeros(8), atol=1e-5)
    assert torch.allclose(var, torch.ones(8), atol=1e-3)  # eps 1e-6 inside the sqrt
    ids = torch.tensor([[3, 4], [6, 0]])
    assert torch.allclose(emb(ids), table[ids], atol=1e-6)


def test_unnormalized_embedding_is_plain_lookup():
    emb = NormalizedEmbedding(5, 4, [1, 1, 1, 1, 1], normalize=False)
    ids = torch.tensor([1, 3])
    assert torch.equal(emb(ids), emb.weight[ids])


def test_variational_dropout_shares_mask_over_time():
    torch.manual_seed(0)
    drop = VariationalDropout(0.5).train()
    y = drop(torch.ones(3, 7, 10))
    zero = y == 0
    assert zero.any() and (~zero).any()
    assert (zero == zero[:, :1, :]).all()  # same mask at every time step
    assert torch.allclose(y[~zero], torch.full_like(y[~zero], 2.0))
    assert torch.equal(drop.eval()(torch.ones(2, 3, 4)), torch.ones(2, 3, 4))


def test_char_cnn_ignores_padding_chars():
    torch.manual_seed(0)
    cnn = CharCNN(5, 6, 3)
    x = torch.randn(1, 4, 5)
    mask = torch.tensor([[True, True, True, False]])
    garbage = x.clone()
    garbage[0, 3] = 1e3
    assert torch.allclose(cnn(x[:, :3], mask[:, :3]), cnn(garbage, mask), atol=1e-5)
    assert torch.equal(cnn(x, torch.zeros(1, 4, dtype=torch.bool)), torch.zeros(1, 6))


def test_bilstm_is_independent_of_batch_padding():
    torch.manual_seed(0)
    lstm = BiLSTM(4, 5, depth=2, dropout=0.3).eval()
    a = torch.randn(1, 3, 4)
    padded = torch.cat([torch.cat([a, torch.randn(1, 2, 4)], 1), torch.randn(1, 5, 4)])
    alone = lstm(a, torch.tensor([3]))
    batched = lstm(padded, torch.tensor([3, 5]))
    assert torch.allclose(alone[0], batched[0, :3], atol=1e-6)


def test_tagger_loss_and_decode_shapes():
    torch.manual_seed(0)
    tags = bio_tag_names(["LOC", "PER"])
    net = CharCNNBiLSTMCRF(20, 10, [(len(tags), allowed_transitions(tags)), (3, None)],
                           word_width=6, char_width=4, char_filters=5, hidden_width=7, depth=2)
    word_ids = torch.randint(3, 20, (2, 5))
    char_ids = torch.randint(3, 10, (2, 5, 4))
    lengths = torch.tensor([5, 3])
    mask = length_mask(lengths, 5)
    words, chars = net.embed(word_ids, char_ids)
    emissions = net.emissions(words, chars, char_ids, lengths)
    assert [e.shape for e in emissions] == [(2, 5, 5), (2, 5, 3)]
    gold = [torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long)]
    nll = net.nll(emissions, gold, mask)
    assert nll.shape == (2,) and (nll > 0).all()
    nll.sum().backward()
    assert net.word_embed.weight.grad is not None
    paths = net.decode(emissions, mask)
    assert [p.shape for p in paths] == [(2, 5), (2, 5)]


def test_word_dropout_only_in_training():
    net = CharCNNBiLSTMCRF(20, 10, [(3, None)], word_dropout=0.5)
    ids = torch.randint(3, 20, (4, 50))
    ids[:, 40:] = 0
    dropped = net.train().drop_words(ids, unk_id=1)
    assert (dropped == 1).any() and (dropped[:, 40:] == 0).all()
    assert torch.equal(net.eval().drop_words(ids, unk_id=1), ids)
