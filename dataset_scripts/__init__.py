"""Facial-expression datasets as Hugging Face `DatasetDict`s."""
