"""Networks: the residual 3-D U-Net image path, the fusion/alignment modules and the LLMSeg model."""
from segmentation.networks.unet import ResidualUNet  # noqa: F401
from segmentation.networks.fusion import FUSIONS, build_fusion  # noqa: F401
from segmentation.networks.llmseg import LLMSegNet  # noqa: F401
