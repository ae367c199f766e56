"""Generator of the embedded mini-Cdiscount sample (stage ``sample``)."""
from .generator import SampleConfig, generate_sample

__all__ = ["SampleConfig", "generate_sample"]
