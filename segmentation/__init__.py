"""ContextRT segmentation engine: the LLMSeg multimodal network, its baselines, training and
whole-volume inference. Plain PyTorch + MONAI; imports no Django."""
