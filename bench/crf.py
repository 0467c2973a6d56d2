"""Our CRF against pytorch-crf (`pip install pytorch-crf`): identical
log-likelihoods and Viterbi paths asserted on random emissions, then median
times of the NLL (forward, and forward + backward) and of Viterbi decoding.

    python bench/crf.py [--repeats 30] [--threads 1] [--quick]

Batch 64, length 40 (rows of random lengths 20..40), 9 and 23 tags, no
transition constraints (pytorch-crf has none); Viterbi also for one sentence
of 14 tokens (batch 1, serving one text: our numpy loop). Paths are also
asserted identical for the single sentence. Writes bench/results/crf.json.
"""
import argparse
import statistics
import sys
import time

import torch

from common import machine, setup_torch, write_json


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(n_tags: int, batch: int, length: int, repeats: int) -> dict:
    import torchcrf
    from spacy_mat.crf import CRF

    gen = torch.Generator().manual_seed(n_tags)
    theirs = torchcrf.CRF(n_tags, batch_first=True)
    ours = CRF(n_tags)
    with torch.no_grad():
        for name in ("transitions", "start_transitions", "end_transitions"):
            getattr(theirs, name).copy_(torch.randn(getattr(theirs, name).shape, generator=gen))
            getattr(ours, name).copy_(getattr(theirs, name))
    emissions = torch.randn(batch, length, n_tags, generator=gen, requires_grad=True)
    lengths = torch.randint(length // 2, length + 1, (batch,), generator=gen)
    lengths[0] = length
    mask = torch.arange(length)[None, :] < lengths[:, None]
    tags = torch.randint(0, n_tags, (batch, length), generator=gen) * mask

    ours_ll = -ours.nll(emissions, tags, mask)
    theirs_ll = theirs(emissions, tags, mask.to(torch.uint8), reduction="none")
    assert torch.allclose(ours_ll, theirs_ll, atol=1e-3, rtol=1e-5), "log-likelihoods differ"
    ours_paths = ours.decode(emissions, mask)
    theirs_paths = theirs.decode(emissions, mask.to(torch.uint8))
    for b, path in enumerate(theirs_paths):
        assert ours_paths[b, : len(path)].tolist() == path, f"Viterbi paths differ in row {b}"

    def nll_backward(crf_loss):
        def run():
            emissions.grad = None
            crf_loss().backward()
        return run

    one_e, one_m = emissions[:1, :14].detach(), mask[:1, :14]
    one_theirs = theirs.decode(one_e, one_m.to(torch.uint8))[0]
    assert ours.decode(one_e, one_m)[0].tolist() == one_theirs, "Viterbi paths differ (batch 1)"
    with torch.no_grad():
        t = {
            "nll_ours": timed(lambda: ours.nll(emissions, tags, mask).sum(), repeats),
            "nll_pytorch_crf": timed(lambda: -theirs(emissions, tags, mask.to(torch.uint8)), repeats),
            "viterbi_ours": timed(lambda: ours.decode(emissions, mask), repeats),
            "viterbi_pytorch_crf": timed(lambda: theirs.decode(emissions, mask.to(torch.uint8)), repeats),
            "viterbi_b1_ours": timed(lambda: ours.decode(one_e, one_m), repeats * 5),
            "viterbi_b1_pytorch_crf": timed(lambda: theirs.decode(one_e, one_m.to(torch.uint8)), repeats * 5),
        }
    t["nll_fwd_bwd_ours"] = timed(nll_backward(lambda: ours.nll(emissions, tags, mask).sum()), repeats)
    t["nll_fwd_bwd_pytorch_crf"] = timed(
        nll_backward(lambda: -theirs(emissions, tags, mask.to(torch.uint8))), repeats)
    return {
        "n_tags": n_tags, "batch": batch, "length": length, "identical": True,
        "median_s": {k: round(v, 6) for k, v in t.items()},
        "speedup": {
            "nll": round(t["nll_pytorch_crf"] / t["nll_ours"], 2),
            "nll_fwd_bwd": round(t["nll_fwd_bwd_pytorch_crf"] / t["nll_fwd_bwd_ours"], 2),
            "viterbi": round(t["viterbi_pytorch_crf"] / t["viterbi_ours"], 2),
        },
        "speedup_batch1": {"viterbi": round(t["viterbi_b1_pytorch_crf"] / t["viterbi_b1_ours"], 2)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    setup_torch(args.threads, gpu_id=-1)
    repeats = 2 if args.quick else args.repeats
    rows = [compare(n, 64, 40, repeats) for n in (9, 23)]
    print(f"{'tags':>4} {'NLL ours ms':>12} {'NLL torchcrf':>13} {'x':>5} {'fwd+bwd x':>9} "
          f"{'Viterbi ours ms':>16} {'Viterbi torchcrf':>17} {'x':>6} {'B=1 x':>6}")
    for r in rows:
        m, s = r["median_s"], r["speedup"]
        print(f"{r['n_tags']:>4} {m['nll_ours'] * 1e3:12.2f} {m['nll_pytorch_crf'] * 1e3:13.2f} "
              f"{s['nll']:5.1f} {s['nll_fwd_bwd']:9.1f} {m['viterbi_ours'] * 1e3:16.2f} "
              f"{m['viterbi_pytorch_crf'] * 1e3:17.2f} {s['viterbi']:6.1f} {r['speedup_batch1']['viterbi']:6.1f}")
    write_json("crf", {"threads": args.threads, "repeats": repeats, "rows": rows,
                       "machine": machine()}, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
