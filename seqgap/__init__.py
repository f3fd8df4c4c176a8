"""seqgap: measure where recurrent models and Transformers part ways."""

__version__ = "0.1.0"
