"""Networks and encoders."""

from .encoders import ENCODERS, EncoderConfig, create_encoder
from .pixnet import PixNetNetwork

__all__ = ["ENCODERS", "EncoderConfig", "PixNetNetwork", "create_encoder"]
