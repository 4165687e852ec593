"""The text extractor's first module name, kept so that code written against it still imports: everything lives in
`pipeline/extract/text_encoder.py` now (`hf_text`, and `bert`, its alias in params)."""

from pipeline.extract.text_encoder import DEFAULTS, BertExtractor, TextEncoderExtractor, plan_batches

__all__ = ["DEFAULTS", "BertExtractor", "TextEncoderExtractor", "plan_batches"]
