"""The numpy forward pass of one sentence (spacy_mat.host_forward) against
the torch modules, its weight cache, and the pipeline's one-sentence path
against its batched path."""
import numpy as np
import pytest
import torch
from spacy.tokens import Doc, Span

from spacy_mat import host_forward
from spacy_mat.architectures import add_words, get_network, host_emissions
from spacy_mat.network import CharCNN, CharCNNBiLSTMCRF, NormalizedEmbedding
from spacy_mat.tags import allowed_transitions

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
CHUNKS = ["O", "B-NP", "I-NP"]


@pytest.mark.parametrize("window", [3, 4, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_char_cnn_matches_torch(window, dtype):
    torch.manual_seed(window)
    cnn = CharCNN(6, 7, window).to(dtype)
    vectors = torch.randn(5, 9, 6, dtype=dtype) * 2
    lengths = torch.tensor([9, 1, 0, 4, 7])  # a row without characters gives zeros
    mask = torch.arange(9)[None, :] < lengths[:, None]
    with torch.no_grad():
        expected = cnn(vectors, mask).numpy()
    got = host_forward.char_cnn(vectors.numpy(), mask.numpy(), cnn.conv.weight.detach().numpy(),
                                cnn.conv.bias.detach().numpy())
    assert got.dtype == expected.dtype and got.shape == (5, 7)
    assert not got[2].any()
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(got, expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("n_trainable", [30, 12])
def test_lookup_matches_normalized_embedding(normalize, n_trainable):
    torch.manual_seed(0)
    table = NormalizedEmbedding(30, 4, counts=list(range(30)), normalize=normalize,
                                n_trainable=n_trainable, n_counted=n_trainable)
    ids = torch.tensor([[0, 5, 11, 12, 29], [13, 3, 3, 28, 1]])  # trained and fixed rows
    with torch.no_grad():
        expected = table(ids).numpy()
        mean, std = (t.numpy() for t in table.stats()) if normalize else (None, None)
    host = host_forward.HostTable(table.weight.detach().numpy(), table.fixed.numpy(), mean, std)
    np.testing.assert_allclose(host_forward.lookup(host, ids.numpy()), expected, atol=1e-6, rtol=1e-6)


def _network(**kwargs):
    torch.manual_seed(1)
    settings = dict(word_width=8, char_width=6, char_filters=5, char_window=3, hidden_width=7,
                    word_counts=list(range(40)), char_counts=[1] * 20)
    return CharCNNBiLSTMCRF(40, 20, [(len(BIO), allowed_transitions(BIO)), (len(CHUNKS), None)],
                            **{**settings, **kwargs})


@pytest.mark.parametrize("kwargs", [{}, {"depth": 2, "n_trainable_words": 25, "n_counted_words": 25},
                                    {"normalize_embeddings": False, "char_window": 4}])
def test_network_emissions_on_the_host_match_torch(kwargs):
    net = _network(**kwargs).eval()
    gen = torch.Generator().manual_seed(3)
    word_ids = torch.randint(1, 40, (1, 11), generator=gen)
    char_ids = torch.randint(1, 20, (1, 11, 6), generator=gen)
    char_ids[0, 2, 3:] = 0  # words of different lengths
    char_ids[0, 5, 1:] = 0
    with torch.inference_mode():
        words, chars = net.embed(word_ids, char_ids)
        net.lstm.host_single = False  # torch's LSTM as the reference
        expected = [e[0].numpy() for e in net.emissions(words, chars, char_ids, torch.tensor([11]))]
        net.lstm.host_single = True
        weights = net.host_weights()
    got = host_forward.emissions(weights, word_ids[0].numpy(), char_ids[0].numpy())
    assert [g.shape for g in got] == [(11, len(BIO)), (11, len(CHUNKS))]
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)


def test_host_weights_apply_only_in_prediction_and_follow_the_weights():
    net = _network()
    with torch.no_grad():
        assert net.host_weights() is None  # training mode
        net.eval()
        first = net.host_weights()
        assert first is not None and net.host_weights() is first  # cached
        net.emitters[0].weight.add_(1.0)  # an in-place torch edit: rebuilt
        second = net.host_weights()
        assert second is not first
        np.testing.assert_array_equal(second.emitters[0][0], net.emitters[0].weight.numpy())
        net.lstm.host_single = False
        assert net.host_weights() is None
        net.lstm.host_single = True
        net.double()  # another dtype: new storage, rebuilt
        assert net.host_weights().conv_weight.dtype == np.float64
    net.train()
    assert net._host_cache is None
    context = CharCNNBiLSTMCRF(40, 20, [(len(BIO), None)], word_width=8, char_width=6, char_filters=5,
                               hidden_width=7, context_width=3, context_layers=2).eval()
    with torch.no_grad():
        assert context.host_weights() is None  # context features: the torch path


def test_pipeline_one_sentence_takes_the_host_path_and_matches_torch():
    from test_component import train_tiny

    nlp, examples, _ = train_tiny(steps=10)
    tagger = nlp.get_pipe("mat_tagger")
    network = get_network(tagger.model)
    texts = [eg.reference.text for eg in examples[:8]] + ["Mary Smith visited New York ."]
    # right after training in-process the network is in training mode (each
    # prediction switches to eval and back): the torch path
    assert network.training and host_emissions(tagger.model, [["Mary", "Smith"]]) is None
    network.eval()  # as a loaded pipeline is
    assert host_emissions(tagger.model, [["Mary", "Smith"]]) is not None
    assert host_emissions(tagger.model, [["Mary"], ["Smith"]]) is None
    host = [nlp(t) for t in texts]
    network.lstm.host_single = False  # the torch path for one sentence
    try:
        with torch.no_grad():
            assert network.host_weights() is None
        reference = [nlp(t) for t in texts]
    finally:
        network.lstm.host_single = True
    key = tagger.scores_key
    for a, b in zip(host, reference):
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
        np.testing.assert_allclose(a.spans[key].attrs["scores"], b.spans[key].attrs["scores"], atol=1e-5)
    # a preset entity constrains the host path as it does the batched one
    doc = nlp.make_doc("Mary Smith visited New York .")
    doc.set_ents([Span(doc, 3, 5, label="PER")])
    single = nlp(doc.copy())
    batched = list(nlp.pipe([doc.copy(), nlp.make_doc("and more words here .")], batch_size=64))[0]
    assert [(e.start, e.end, e.label_) for e in single.ents] == [(e.start, e.end, e.label_) for e in batched.ents]
    assert (3, 5, "PER") in [(e.start, e.end, e.label_) for e in single.ents]
    np.testing.assert_allclose(single.spans[key].attrs["scores"], batched.spans[key].attrs["scores"], atol=1e-5)
    # scores off: the plain forward pass takes the host path too
    tagger.scores_key = None
    try:
        plain = [nlp(t) for t in texts]
    finally:
        tagger.scores_key = key
    for a, b in zip(plain, reference):
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
    # growing the vocabulary replaces the tables: the host cache is dropped
    with torch.no_grad():
        assert network.host_weights() is not None
    tables = tagger.model.attrs["tables"]
    if tables.n_trained == len(tables.words):
        add_words(tagger.model, ["zzyzx-new-word"], ["\u00e6"])
        assert network._host_cache is None
        doc = nlp(Doc(nlp.vocab, words=["zzyzx-new-word", "\u00e6"]))
        assert len(doc) == 2
