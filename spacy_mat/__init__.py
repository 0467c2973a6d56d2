"""spacy_mat: CNN-LSTM-CRF sequence labelling with masked adversarial training
for spaCy. Importing the package registers the component, architectures,
scorer and schedules."""
from .architectures import build_charcnn_bilstm_crf
from .batching import configure_batch_by_length
from .callbacks import adversarial_schedule, exponential_decay
from .component import MatTagger, make_mat_tagger
from .contextual import transformer_features
from .loggers import console_logger
from .readers import create_sentence_corpus
from .scoring import make_tagger_scorer

__version__ = "0.1.0"
__all__ = ["MatTagger", "make_mat_tagger", "build_charcnn_bilstm_crf", "transformer_features",
           "make_tagger_scorer", "create_sentence_corpus", "configure_batch_by_length",
           "exponential_decay", "adversarial_schedule", "console_logger", "__version__"]
