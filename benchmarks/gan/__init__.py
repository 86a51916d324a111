"""Side-by-side GAN training on CIFAR-10: models, data, losses, critic treatments, metrics, loop, reports.

One concept per module: ``models_cnn`` / ``models_resnet`` (the paper's CIFAR-10 setups), ``critics_extra``
(ESRGAN-VGG and SPADE PatchGAN critics for the speed table), ``data``, ``classifier`` / ``inception`` /
``metrics`` (feature networks, classifier-FID/IS and Inception FID/IS), ``losses``, ``treatments``,
``setups``, ``presets``, ``checkpoint``, ``train``, ``report``, ``plots``.
"""
