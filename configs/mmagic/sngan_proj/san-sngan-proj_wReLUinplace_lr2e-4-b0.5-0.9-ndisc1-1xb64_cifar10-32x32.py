# SAN version of mmagic's sngan-proj_wReLUinplace_lr2e-4-ndisc5-1xb64_cifar10-32x32.py (the ResNet of
# Miyato et al. 2018 with a projection critic). Changes, as in the SAN paper (Kligvasser & Michaeli, AAAI 2021):
# spectral norm removed from D, SAN on every D conv/linear/embedding with circular padding, one D step per
# G step, hinge loss (mmagic's SNGAN already uses it), Adam lr 2e-4 betas (0.5, 0.9), 200 epochs of batch 64.
# The paper's Table 1 runs this architecture unconditionally: set num_classes=0 in model, generator and
# discriminator for that setting (the baseline config, and this one, are class-conditional).
_base_ = "mmagic::sngan_proj/sngan-proj_wReLUinplace_lr2e-4-ndisc5-1xb64_cifar10-32x32.py"

custom_imports = dict(imports=["san_mmagic"], allow_failed_imports=False)

# CIFAR-10 from local files only (san_mmagic's LocalCIFAR10; never downloads): an image folder
# <root>/cifar10/train/<class>/*.png|jpg or torchvision's <root>/cifar10/cifar-10-batches-py (or the same under
# <root>). This repository's copy, from the repository root:
#   mkdir -p data/cifar10 && tar -xzf ../shared/data/cifar10/cifar10_jpeg.tar.gz -C data/cifar10
data_root = "{{$SAN_CIFAR10_ROOT:./data}}"

discriminator_steps = 1
model = dict(discriminator=dict(with_spectral_norm=False), discriminator_steps=discriminator_steps)

train_cfg = dict(max_iters=156250)  # 200 epochs of 50k images in batches of 64 (one D and one G step each)
train_dataloader = dict(dataset=dict(type="LocalCIFAR10", data_root=data_root))
val_dataloader = dict(dataset=dict(type="LocalCIFAR10", data_root=data_root))
test_dataloader = dict(dataset=dict(type="LocalCIFAR10", data_root=data_root))

optim_wrapper = dict(
    generator=dict(optimizer=dict(type="Adam", lr=0.0002, betas=(0.5, 0.9))),
    discriminator=dict(optimizer=dict(type="Adam", lr=0.0002, betas=(0.5, 0.9))),
)

custom_hooks = [
    dict(type="VisualizationHook", interval=5000, fixed_input=True, vis_kwargs_list=dict(type="GAN", name="fake_img")),
    dict(type="SANHook", module="discriminator", circular_padding=True, strip_spectral_norm=True),
]
