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
        "matplotlib",
        # frozen-transformer features (spacy_mat.TransformerFeatures.v1)
        "transformers>=4.30,<5",
    ],
    extras_require={"test": ["pytest>=7", "matplotlib", "seqeval", "pytorch-crf"]},
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
