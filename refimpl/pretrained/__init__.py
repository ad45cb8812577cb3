"""Real pretrained models, loaded from scratch into :mod:`refimpl.nn` (chapter 9).

========================  ==================================================================
``safetensors``           a NumPy reader/writer of the safetensors format (no pickle), with
                          header, dtype, shape, offset and SHA-256 checks
``tokenizer``             BERT's BasicTokenizer + WordPiece from scratch (the ``tokenizers``
                          library's ids)
``minilm``                all-MiniLM-L6-v2 as refimpl's own BERT (:class:`MiniLM`,
                          :func:`load_minilm`): ``BertEmbeddings`` + ``TransformerEncoder``,
                          mean pooling, L2 normalisation
``evaluate``              fidelity (mean cosine to a reference encoder), docstring retrieval
                          (recall@1, MRR), STS-B Spearman × 100
========================  ==================================================================

The loading, model and evaluation modules import only the ground floor of refimpl (``nn``,
``data``, ``utils``, ...), never torch.
"""

from refimpl.pretrained.evaluate import (RetrievalPairs, docstring_retrieval_pairs,
                                         evaluate_retrieval, fidelity, mean_cosine, real_text,
                                         retrieval_scores, spearman, stsb_spearman)
from refimpl.pretrained.minilm import (MINILM_PACKAGE, MINILM_SHA256, MiniLM, MiniLMConfig,
                                       build_minilm, find_minilm_files, hf_to_refimpl_name,
                                       load_minilm)
from refimpl.pretrained.safetensors import (SafetensorsError, load_safetensors,
                                            read_safetensors_header, save_safetensors,
                                            sha256_file)
from refimpl.pretrained.tokenizer import WordPieceTokenizer, basic_tokenize, load_vocab, normalize_bert

__all__ = [
    "MiniLM", "MiniLMConfig", "load_minilm", "build_minilm", "find_minilm_files",
    "hf_to_refimpl_name", "MINILM_SHA256", "MINILM_PACKAGE",
    "SafetensorsError", "load_safetensors", "read_safetensors_header", "save_safetensors",
    "sha256_file",
    "WordPieceTokenizer", "basic_tokenize", "load_vocab", "normalize_bert",
    "mean_cosine", "fidelity", "real_text", "docstring_retrieval_pairs", "RetrievalPairs",
    "retrieval_scores", "evaluate_retrieval", "spearman", "stsb_spearman",
]
