"""SAN for ajbrock/BigGAN-PyTorch: SN-compatible SAN layers, patcher and launcher (``python -m san_biggan``)."""
