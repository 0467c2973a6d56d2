"""Evaluation beyond a single F1: conlleval-exact scores, unseen-word F1,
context robustness probes, confidence tracking during training, and plots.

One job per module:

* ``conlleval``   chunk-level P/R/F1 and token accuracy exactly as the CoNLL
                  ``conlleval`` script computes and prints them;
* ``predictions`` reading/writing ``word gold pred`` prediction files;
* ``tagging``     gold sentence docs from .spacy/CoNLL files, running a
                  pipeline, gold/predicted tag sequences, spaCy cross-check;
* ``unseen``      token-level F1 on words never seen in training;
* ``rewrite``     context robustness: replace entities by unseen ones;
* ``masking``     word-masking probe: one token per sentence made unknown;
* ``robustness``  the robustness evaluation (original vs rewritten/masked);
* ``confidence``  training callbacks: confidence tracker, callback chaining;
* ``plots``       learning curves, confidence curves, robustness bars (PNG + JSON);
* ``commands``    what the ``score``, ``robustness`` and ``plot-*`` subcommands
                  of ``python -m spacy_mat`` run.

Nothing is imported here, so importing the package stays cheap.
"""
