# SN-GAN baseline with the "standard CNN" of Miyato et al. 2018 (Table 3): unconditional, spectral norm on
# every D layer, hinge loss, Adam lr 2e-4 betas (0.5, 0.999), 5 D steps per G step (their setting C), on
# mmagic's sngan_proj CIFAR-10 pipeline. Its SAN version: san-sngan-standard-cnn_*.py next to this file.
_base_ = "mmagic::sngan_proj/sngan-proj_wReLUinplace_lr2e-4-ndisc5-1xb64_cifar10-32x32.py"

custom_imports = dict(imports=["san_mmagic"], allow_failed_imports=False)

# CIFAR-10 from local files only (san_mmagic's LocalCIFAR10; never downloads): an image folder
# <root>/cifar10/train/<class>/*.png|jpg or torchvision's <root>/cifar10/cifar-10-batches-py (or the same under
# <root>). This repository's copy, from the repository root:
#   mkdir -p data/cifar10 && tar -xzf ../shared/data/cifar10/cifar10_jpeg.tar.gz -C data/cifar10
data_root = "{{$SAN_CIFAR10_ROOT:./data}}"

num_classes = 0
model = dict(
    num_classes=num_classes,
    generator=dict(_delete_=True, type="SNGANStandardCNNGenerator", output_scale=32, noise_size=128, base_channels=64),
    discriminator=dict(
        _delete_=True, type="SNGANStandardCNNDiscriminator", input_scale=32, base_channels=64, with_spectral_norm=True
    ),
)

train_dataloader = dict(dataset=dict(type="LocalCIFAR10", data_root=data_root))
val_dataloader = dict(dataset=dict(type="LocalCIFAR10", data_root=data_root))
test_dataloader = dict(dataset=dict(type="LocalCIFAR10", data_root=data_root))
