"""SAN for POSTECH-CVLab/PyTorch-StudioGAN: module builders, YAML options and launcher (``python -m san_studiogan``)."""
