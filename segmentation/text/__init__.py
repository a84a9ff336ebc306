"""Text encoders for the clinical context, behind one registry (``build_text_encoder``)."""
from segmentation.text.encoders import (  # noqa: F401
    ENCODER_KINDS,
    TUNING_MODES,
    NumericCategoryEncoder,
    PromptTunedLM,
    TextEncoder,
    VisionOnly,
    build_text_encoder,
)
