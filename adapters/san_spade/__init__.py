"""SAN for NVlabs/SPADE: discriminator patcher and launcher (``python -m san_spade``)."""
