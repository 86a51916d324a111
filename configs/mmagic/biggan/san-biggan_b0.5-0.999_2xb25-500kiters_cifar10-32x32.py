# SAN version of mmagic's biggan_2xb25-500kiters_cifar10-32x32.py (conditional BigGAN, CIFAR-10 32x32), as in
# the SAN paper (Kligvasser & Michaeli, AAAI 2021): spectral norm replaced by SAN in all of D's res-blocks
# (their convs switched to circular padding; D's final linear and class embedding keep torch spectral norm),
# Adam's first momentum beta1 = 0.5 (was 0.0). Everything else as the baseline.
_base_ = "mmagic::biggan/biggan_2xb25-500kiters_cifar10-32x32.py"

custom_imports = dict(imports=["san_mmagic"], allow_failed_imports=False)

# CIFAR-10 from local files only (san_mmagic's LocalCIFAR10; never downloads): an image folder
# <root>/cifar10/train/<class>/*.png|jpg or torchvision's <root>/cifar10/cifar-10-batches-py (or the same under
# <root>). This repository's copy, from the repository root:
#   mkdir -p data/cifar10 && tar -xzf ../shared/data/cifar10/cifar10_jpeg.tar.gz -C data/cifar10
data_root = "{{$SAN_CIFAR10_ROOT:./data}}"
train_dataloader = dict(dataset=dict(type="LocalCIFAR10", data_root=data_root))
val_dataloader = dict(dataset=dict(type="LocalCIFAR10", data_root=data_root))
test_dataloader = dict(dataset=dict(type="LocalCIFAR10", data_root=data_root))

optim_wrapper = dict(
    generator=dict(optimizer=dict(type="Adam", lr=0.0002, betas=(0.5, 0.999))),
    discriminator=dict(optimizer=dict(type="Adam", lr=0.0002, betas=(0.5, 0.999))),
)

custom_hooks = [
    dict(
        type="VisualizationHook",
        interval=5000,
        fixed_input=True,
        vis_kwargs_list=dict(type="Noise", name="fake_img", sample_model="ema/orig", target_keys=["ema", "orig"]),
    ),
    dict(
        type="SANHook",
        module="discriminator",
        targets=["conv_blocks.*"],
        circular_padding=True,
        strip_spectral_norm=True,
    ),
]
