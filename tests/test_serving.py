"""Serving speed and memory (issue #15): the fast Viterbi against pytorch-crf
and brute force, the single-sequence numpy paths against the batched torch
ones, the prediction caches (embedding statistics, CRF scores) and their
invalidation, the BiLSTM's host-sorted packing, the transformer feature
cache's bounds, and host syncs: counted with ``torch.cuda.set_sync_debug_mode``
on a GPU, and on any machine by running the step on the ``meta`` device, where
every read of a value on the host (``bool()``, ``.item()``, ``.cpu()``,
boolean indexing) raises."""
import itertools
import traceback

import numpy as np
import pytest
import spacy
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from spacy_mat import crf
from spacy_mat.network import BiLSTM, CharCNNBiLSTMCRF, length_mask
from spacy_mat.tags import allowed_transitions

BIO = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _random_scores(n_tags, gen, dtype=torch.float32):
    return tuple(torch.randn(*shape, generator=gen).to(dtype)
                 for shape in ((n_tags, n_tags), (n_tags,), (n_tags,)))


def _batch(n_tags, batch, length, gen, dtype=torch.float32, min_length=1):
    emissions = (3 * torch.randn(batch, length, n_tags, generator=gen)).to(dtype)
    lengths = torch.randint(min_length, length + 1, (batch,), generator=gen)
    lengths[0] = length
    return emissions, length_mask(lengths, length), lengths


# -- Viterbi -------------------------------------------------------------------------------

@pytest.mark.parametrize("n_tags,batch", [(23, 64), (23, 1), (9, 32), (9, 1), (2, 5)])
def test_viterbi_paths_identical_to_pytorch_crf(n_tags, batch):
    """Constraints off: the same best paths as pytorch-crf, row by row
    (batch 1 takes the numpy loop, larger batches the torch recursion)."""
    torchcrf = pytest.importorskip("torchcrf")
    gen = torch.Generator().manual_seed(n_tags * 100 + batch)
    theirs = torchcrf.CRF(n_tags, batch_first=True)
    for trial in range(3):
        with torch.no_grad():
            for name, value in zip(("transitions", "start_transitions", "end_transitions"),
                                   _random_scores(n_tags, gen)):
                getattr(theirs, name).copy_(value)
        emissions, mask, lengths = _batch(n_tags, batch, 30, gen)
        ours = crf.viterbi_decode(emissions, mask, theirs.transitions.detach(),
                                  theirs.start_transitions.detach(), theirs.end_transitions.detach())[0]
        expected = theirs.decode(emissions, mask)
        for row, path in enumerate(expected):
            assert ours[row, : len(path)].tolist() == path, (trial, row)
            assert ours[row, len(path):].eq(0).all()


def _brute_best(emissions, n, transitions, start, end, valid):
    best, best_path = -float("inf"), None
    for path in itertools.product(range(emissions.shape[1]), repeat=n):
        if not valid(path):
            continue
        score = start[path[0]] + end[path[-1]] + sum(emissions[t, k] for t, k in enumerate(path))
        score = float(score + sum(transitions[a, b] for a, b in zip(path, path[1:])))
        if score > best:
            best, best_path = score, list(path)
    return best, best_path


@pytest.mark.parametrize("batch", [1, 6])
def test_constrained_viterbi_is_the_best_allowed_path(batch):
    """Constraints on (BIO): the best path among the allowed ones, found by
    enumeration, for the numpy single-row loop and the batched recursion."""
    gen = torch.Generator().manual_seed(batch)
    allowed = allowed_transitions(BIO)
    model = crf.CRF(len(BIO), allowed).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    model.eval()
    start_ok, trans_ok, end_ok = allowed

    def valid(path):
        return (start_ok[path[0]] and end_ok[path[-1]]
                and all(trans_ok[a, b] for a, b in zip(path, path[1:])))

    for _ in range(4):
        emissions, mask, lengths = _batch(len(BIO), batch, 5, gen, torch.float64)
        emissions[:, :, 2] += 2.0  # tempt I-PER everywhere, the start included
        with torch.no_grad():
            paths, scores = crf.viterbi_decode(emissions, mask, *model.scores(torch.float64))
        with torch.no_grad():
            trans, start, end = model.scores(torch.float64)
        for row, n in enumerate(lengths.tolist()):
            best, best_path = _brute_best(emissions[row], n, trans, start, end, valid)
            assert paths[row, :n].tolist() == best_path
            assert float(scores[row]) == pytest.approx(best, abs=1e-9)


def test_viterbi_score_is_differentiable_when_inputs_require_grad():
    gen = torch.Generator().manual_seed(0)
    emissions, mask, _ = _batch(5, 3, 6, gen, torch.float64)
    emissions.requires_grad_(True)
    trans, start, end = _random_scores(5, gen, torch.float64)
    paths, score = crf.viterbi_decode(emissions, mask, trans, start, end)
    score.sum().backward()
    # d score / d emissions is the one-hot of the best path at real tokens
    expected = torch.nn.functional.one_hot(paths, 5).double() * mask[..., None]
    assert torch.equal(emissions.grad, expected)


# -- the numpy single-row loops against the batched torch recursions ------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_single_row_paths_match_the_batched_paths(dtype):
    """Decoding, marginals, log-partition and span probabilities of one row
    alone (numpy loops) equal those of the same row inside a batch (torch),
    padding in the single row's mask included."""
    gen = torch.Generator().manual_seed(1)
    model = crf.CRF(len(BIO), allowed_transitions(BIO)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    model.eval()
    emissions, mask, lengths = _batch(len(BIO), 8, 11, gen, dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    with torch.no_grad():
        batch_paths = model.decode(emissions, mask)
        batch_marg = model.marginals(emissions, mask)
        batch_logz = crf.log_partition(emissions, mask, *model.scores(dtype))
        for row in range(8):
            one_e, one_m = emissions[row: row + 1], mask[row: row + 1]
            assert crf._single_host_row(one_e, *model.scores(dtype))
            assert torch.equal(model.decode(one_e, one_m), batch_paths[row: row + 1])
            assert torch.allclose(model.marginals(one_e, one_m), batch_marg[row: row + 1], atol=tol)
            logz = crf.log_partition(one_e, one_m, *model.scores(dtype))
            assert torch.allclose(logz, batch_logz[row: row + 1], atol=tol, rtol=tol)
        # a single row padded to a longer length
        n = int(lengths[1])
        padded = torch.zeros(1, 15, len(BIO), dtype=dtype)
        padded[0, :n] = emissions[1, :n]
        pmask = length_mask(lengths[1:2], 15)
        assert torch.equal(model.decode(padded, pmask)[0, :n], batch_paths[1, :n])
        assert torch.allclose(model.marginals(padded, pmask)[0, :n], batch_marg[1, :n], atol=tol)
        span = [torch.tensor([0]), torch.tensor([1]), torch.tensor([1]), torch.tensor([2])]
        one = model.span_log_probs(padded, pmask, torch.tensor([0]), *span)
        many = model.span_log_probs(emissions, mask, torch.tensor([1]), *span)
        assert torch.allclose(one, many, atol=tol)


def test_single_row_forward_backward_against_logsumexp():
    gen = torch.Generator().manual_seed(2)
    trans, start, end = _random_scores(7, gen, torch.float64)
    emissions, mask, _ = _batch(7, 1, 9, gen, torch.float64)
    mask[0, 6:] = False
    exact_f = crf._forward_logsumexp(emissions, mask, trans, start)
    fast_f = crf._forward(emissions, mask, trans, start)
    exact_b_rows = crf._backward(torch.cat([emissions, emissions]), torch.cat([mask, mask]), trans, end)
    fast_b = crf._backward(emissions, mask, trans, end)
    for a, b in zip(exact_f, fast_f):
        assert torch.allclose(a, b, atol=1e-10)
    for a, b in zip(exact_b_rows, fast_b):
        assert torch.allclose(a[:1], b, atol=1e-10)


# -- prediction caches -----------------------------------------------------------------------

def _tiny_network(**kwargs):
    torch.manual_seed(0)
    return CharCNNBiLSTMCRF(40, 20, [(len(BIO), allowed_transitions(BIO))], word_width=8,
                            char_width=6, char_filters=6, hidden_width=8,
                            word_counts=list(range(40)), char_counts=[1] * 20, **kwargs)


def _ids(gen, batch=3, length=6, width=4):
    word_ids = torch.randint(3, 40, (batch, length), generator=gen)
    char_ids = torch.randint(3, 20, (batch, length, width), generator=gen)
    return word_ids, char_ids


def test_frozen_embedding_stats_are_exact_and_invalidated():
    net = _tiny_network()
    gen = torch.Generator().manual_seed(0)
    word_ids, char_ids = _ids(gen)
    net.eval()
    with torch.no_grad():
        expected = (net.word_embed(word_ids), net.char_embed(char_ids))
        with torch.inference_mode():
            cached = net.embed(word_ids, char_ids)
    assert all(torch.equal(a, b) for a, b in zip(cached, expected))
    assert len(net._stats_cache) == 2
    # thinc's optimizer writes the weights in place through numpy, unseen by
    # torch's version counter: a training step's train() drops the cache
    net.train()
    net.word_embed.weight.data.numpy()[:] += 1.0
    net.eval()
    with torch.no_grad():
        words = net.embed(word_ids, char_ids)[0]
        assert torch.equal(words, net.word_embed(word_ids))
    # a torch in-place edit (load_state_dict, set_rows) is seen by the key
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["word_embed.weight"] = state["word_embed.weight"] * 2.0
    net.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(net.embed(word_ids, char_ids)[0], net.word_embed(word_ids))
    # training mode and autograd never use the cache
    net.train()
    words, _ = net.embed(word_ids, char_ids)
    assert words.requires_grad


def test_crf_scores_cache_follows_the_parameters():
    model = crf.CRF(len(BIO), allowed_transitions(BIO))
    model.eval()
    with torch.no_grad():
        first = model.scores(torch.float32)
        assert model.scores(torch.float32) is first
        model.transitions.add_(1.0)  # in-place torch edit: a new version
        second = model.scores(torch.float32)
        assert second is not first and torch.equal(second[0], model._constrained(torch.float32)[0])
    model.train()  # as every training step does
    model.transitions.data.numpy()[:] += 1.0  # thinc's in-place numpy update
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.scores(torch.float32)[0], model._constrained(torch.float32)[0])
    assert model.scores(torch.float32)[0].requires_grad  # with autograd: never cached


# -- the BiLSTM's packing -------------------------------------------------------------------

def _reference_bilstm(lstm: BiLSTM, x, lengths):
    """The previous implementation: unsorted packing per layer."""
    total = x.shape[1]
    for layer in lstm.layers:
        packed = pack_padded_sequence(lstm.dropout(x), lengths, batch_first=True, enforce_sorted=False)
        out, _ = layer(packed)
        x, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
    return lstm.dropout(x)


@pytest.mark.parametrize("training", [False, True])
def test_bilstm_sorted_packing_equals_unsorted_packing(training):
    torch.manual_seed(0)
    lstm = BiLSTM(5, 4, depth=2, dropout=0.3).train(training)
    x = torch.randn(6, 9, 5)
    for lengths in (torch.tensor([3, 9, 1, 9, 4, 7]), torch.tensor([9] * 6), torch.tensor([9])):
        xs = x[: len(lengths)]
        torch.manual_seed(1)
        expected = _reference_bilstm(lstm, xs, lengths)
        torch.manual_seed(1)
        got = lstm(xs, lengths)
        assert torch.allclose(got, expected, atol=1e-6)
        assert got[:, int(lengths.max()):].eq(0).all() if training is False else True


# -- host syncs --------------------------------------------------------------------------------

def _meta_network():
    return _tiny_network(depth=2).to("meta")


def test_no_host_reads_in_the_training_and_prediction_math():
    """On the meta device any read of a value on the host raises: the
    network's forward and backward passes, the CRF loss, Viterbi and the
    marginals read nothing (the lengths come as a host copy)."""
    net = _meta_network()
    lengths = torch.tensor([6, 4, 1])  # the host copy
    word_ids = torch.zeros(3, 6, dtype=torch.long, device="meta")
    char_ids = torch.zeros(3, 6, 4, dtype=torch.long, device="meta")
    mask = length_mask(lengths.to("meta"), 6)
    tags = torch.zeros(3, 6, dtype=torch.long, device="meta")
    words, chars = net.embed(word_ids, char_ids)
    emissions = net.emissions(words, chars, char_ids, lengths)
    net.nll(emissions, [tags], mask, partial=[False]).mean().backward()
    net.eval()
    with torch.inference_mode():
        words, chars = net.embed(word_ids, char_ids)
        emissions = net.emissions(words, chars, char_ids, lengths)
        net.decode(emissions, mask)
        net.crfs[0].marginals(emissions[0], mask)
    # the check itself can fail: reading the tags to find unknown ones is a host read
    with pytest.raises(RuntimeError, match="meta"):
        net.crfs[0].nll(emissions[0], tags, mask)


@pytest.mark.parametrize("adversarial, where", [
    ({"mode": "none"}, "train_step"),
    ({"mode": "at"}, "train_step"),
    ({"mode": "mat", "select_rate": 1.0, "mask_rate": 1.0}, "train_step"),  # every sentence masked
    ({"mode": "mat", "select_rate": 1.0, "mask_rate": 0.0}, "corrupt_inputs"),  # every one replaced
])
def test_training_step_reads_device_values_once(adversarial, where):
    """A whole training step with the network on the meta device (where any
    read of a value raises): the first read is the losses' at the very end
    (one transfer for both), or, when MAT replaces words, the sampled
    substitute ids (their characters are looked up by word on the host).
    Lengths, unknown-tag flags and the masking plan come from the host."""
    from test_adversarial import make_tagger

    from spacy_mat.architectures import get_network, train_step

    tagger, seqs, gold = make_tagger(adversarial)
    get_network(tagger.model).to("meta")
    with pytest.raises((RuntimeError, NotImplementedError), match="meta") as info:
        train_step(tagger.model, seqs, gold)
    frames = [f for f in traceback.extract_tb(info.value.__traceback__) if "spacy_mat" in f.filename]
    assert frames[-1].name == where
    assert "tolist()" in frames[-1].line or "float(label_loss" in frames[-1].line


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_gpu
def test_no_device_syncs_on_a_gpu():
    """With ``set_sync_debug_mode("error")``, a training step's math and a
    prediction's up to the decoded paths run without a synchronising call;
    the one copy of the paths to the host is the only sync."""
    from spacy_mat.architectures import tensors
    from spacy_mat.features import Batch

    device = torch.device("cuda")
    net = _tiny_network(depth=2).to(device)
    gen = torch.Generator().manual_seed(0)
    word_ids, char_ids = _ids(gen)
    host_lengths = torch.tensor([6, 4, 1])
    batch = Batch(word_ids.numpy(), char_ids.numpy(), host_lengths.numpy())
    tags = torch.zeros(3, 6, dtype=torch.long)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        w, c, lengths = tensors(batch, device)
        gold = tags.to(device, non_blocking=True)
        mask = length_mask(lengths, 6)
        words, chars = net.embed(w, c)
        emissions = net.emissions(words, chars, c, host_lengths)
        net.nll(emissions, [gold], mask, partial=[False]).mean().backward()
        net.eval()
        with torch.inference_mode():
            words, chars = net.embed(w, c)
            paths = net.decode(net.emissions(words, chars, c, host_lengths), mask)
            net.crfs[0].marginals(net.emissions(words, chars, c, host_lengths)[0], mask)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert paths[0].cpu().shape == (3, 6)


def test_shape_buckets_are_few_and_tight():
    from spacy_mat.network import shape_bucket

    sizes = [shape_bucket(n) for n in range(1, 5001)]
    assert all(n <= b <= max(n, 1.25 * n + 1) for n, b in zip(range(1, 5001), sizes))
    assert sizes == sorted(sizes) and len(set(sizes)) < 50


def test_prediction_shape_buckets_leave_the_emissions_unchanged():
    """In prediction the char CNN runs on rows and word widths rounded up
    (a bounded set of shapes); the emissions equal those of training mode
    (no buckets) with dropout off."""
    net = _tiny_network(dropout=0.0)
    gen = torch.Generator().manual_seed(3)
    word_ids, char_ids = _ids(gen, batch=4, length=9, width=7)
    lengths = torch.tensor([9, 7, 3, 1])
    mask = length_mask(lengths, 9)
    char_ids = char_ids * mask[:, :, None]
    word_ids = word_ids * mask
    with torch.no_grad():
        net.train()
        expected = net.emissions(*net.embed(word_ids, char_ids), char_ids, lengths)[0]
        net.eval()
        got = net.emissions(*net.embed(word_ids, char_ids), char_ids, lengths)[0]
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-5, rtol=1e-5)


# -- the transformer feature cache -------------------------------------------------------------

def test_feature_cache_bounded_in_serving(tmp_path):
    pytest.importorskip("transformers")
    from test_contextual import make_tiny_bert

    from spacy_mat.contextual import get_encoder, transformer_features

    bert = make_tiny_bert(tmp_path / "bert")
    sentences = [["john", "lives", "in", "paris", str(i)] for i in range(30)]
    # a training run: prediction may reuse the cache, within cache_size
    layer = transformer_features(name=str(bert), cache_size=10)
    layer.initialize()
    encoder = get_encoder(layer)
    layer.predict(sentences)
    assert len(encoder.cache) == 10 and encoder.stats.evicted == 20
    assert encoder.uses_cache(is_train=True) and encoder.uses_cache(is_train=False)
    # the most recent sentences are the ones kept (LRU)
    layer.predict(sentences[-10:])
    assert encoder.stats.hits == 10
    # a layer restored from bytes (a loaded pipeline) does not cache predictions
    loaded = transformer_features(name=None)
    loaded.from_bytes(layer.to_bytes())
    served = get_encoder(loaded)
    out = loaded.predict(sentences)
    assert len(served.cache) == 0 and served.stats.uncached == 30
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out, layer.predict(sentences)))
    assert served.uses_cache(is_train=True)  # resumed training still caches
    forced = transformer_features(name=None, cache_inference=True)
    forced.from_bytes(layer.to_bytes())
    forced.predict(sentences[:5])
    assert len(get_encoder(forced).cache) == 5


# -- the whole pipeline: one sentence at a time equals batched -----------------------------------

def test_batch_one_predictions_equal_batched_predictions():
    from test_component import train_tiny

    nlp, examples, _ = train_tiny(steps=10)
    texts = [eg.reference.text for eg in examples[:12]] + ["Mary Smith visited New York ."]
    batched = list(nlp.pipe(texts, batch_size=64))
    single = [nlp(t) for t in texts]
    key = nlp.get_pipe("mat_tagger").scores_key
    for a, b in zip(batched, single):
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
        if key is not None and key in a.spans:
            assert np.allclose(a.spans[key].attrs["scores"], b.spans[key].attrs["scores"], atol=1e-5)
